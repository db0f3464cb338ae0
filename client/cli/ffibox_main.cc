// ffibox: call a function of a native library in an ffibox worker from the shell, or
// generate bindings from C headers.
//
//   ffibox [--address=ADDR] [--timeout_ms=N] [--print_errno] call LIB 'DECLARATION' [ARG...]
//   ffibox bindgen --lang=python|cpp --library=LIB HEADER... [-I DIR] [-D NAME=VALUE]
//
// See kUsage below and docs for the syntax. Exit status: 0 on success, 1 when the call or
// the server fails (the typed error is printed to stderr) or the result cannot be written to
// stdout, 2 for a bad command line.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/cli/argument_values.h"
#include "client/cli/bindgen_command.h"
#include "client/cli/connect_flags.h"
#include "client/cli/flag_words.h"
#include "client/cli/result_format.h"
#include "client/cpp/default_address.h"
#include "client/cpp/ffibox_client.h"
#include "core/c_declaration.h"
#include "core/errors.h"

ABSL_FLAG(std::string, address, "",
          "ffiboxd address as a gRPC target (unix:/path/to/sock or host:port); default: "
          "$FFIBOX_ADDRESS, else the per-user socket ffiboxd uses by default");
ABSL_FLAG(int64_t, timeout_ms, 0, "deadline of the call in milliseconds; 0 = server default");
ABSL_FLAG(bool, print_errno, false, "also print the worker's errno after the call");
ABSL_FLAG(std::vector<std::string>, require_jail, {},
          "jail layers the worker must have, comma-separated (user, pid, net, ipc, uts, "
          "mount, filesystem, proc, cgroup, seccomp, no_new_privs, rlimits); the call fails with "
          "JAIL_UNAVAILABLE otherwise. 'all' means every one of them");
ABSL_FLAG(bool, show_jail, false,
          "print the jail layers the session's worker gets (and any waived) on stderr");
ABSL_FLAG(std::string, token, "",
          "bearer token of the client's identity (visible to other users in the process "
          "list: prefer --token_file)");
ABSL_FLAG(std::string, token_file, "",
          "file holding the bearer token (surrounding whitespace ignored)");
ABSL_FLAG(bool, tls, false,
          "connect with TLS (implied by the --tls_* flags), checking the server against the "
          "system's CAs unless --tls_ca is given");
ABSL_FLAG(std::string, tls_ca, "", "PEM file of the CAs the server's certificate must chain to");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate file, for mutual TLS (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key file of --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "name the server's certificate must carry (default: the host of --address)");

namespace ffibox {
namespace cli {
namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] = R"(call a function of a native library inside an ffibox worker,
or generate bindings for one from its C headers.

usage: ffibox [--address=ADDR] [--timeout_ms=N] [--print_errno] [--require_jail=LAYERS]
              [--show_jail] [--token=T | --token_file=FILE] [--tls] [--tls_ca=FILE]
              [--tls_cert=FILE --tls_key=FILE] [--tls_server_name=NAME]
              call LIB 'DECLARATION' [ARG...]

  LIB          library path, or a soname such as libm.so.6
  DECLARATION  a C declaration: 'double cos(double)', 'size_t strlen(const char *s)',
               'int printf(const char*, ...)'
  ARG          one word per parameter: integers (42, -1, 0x2a), _Bool (true/false),
               floating point (0.5, 1e-3), char (a number or one character), char* (the
               word itself), wchar_t* (UTF-8), pointers (NULL or 0x...). Arguments of a
               variadic function after the fixed ones are TYPE:VALUE, e.g. int:5,
               double:2.5, 'const char*:text' (float, char and short are promoted as in C).
Flags come before `call` and take the --flag=value form.
The result is printed on stdout: numbers in full precision (%.17g), strings quoted,
pointers as 0x..., NULL as NULL; nothing for void. What the library itself prints (the
worker's output events) arrives on stdout and stderr as it wrote them.
A TCP server needs TLS: --tls_ca (or --tls with a certificate the system trusts) and the
identity's token (--token_file), with a client certificate (--tls_cert, --tls_key) where
the identity requires one.

usage: ffibox bindgen --lang=python|cpp --library=LIB [--namespace=NS] HEADER...
              [-I DIR] [-D NAME[=VALUE]]

  Parses the headers with libclang and prints, on stdout, a Python module for
  `from ffibox import ctypes` (python) or a header for the C++ client (cpp; its
  declarations in namespace NS, default `bindings`). See docs/bindgen.md.
)";

// kUsage, then the flags defined above with their descriptions: what `ffibox --help` prints.
std::string HelpText() {
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    // absl's own flags (--flagfile, --fromenv, ...) are not the CLI's.
    if (absl::EndsWith(flag->Filename(), "client/cli/ffibox_main.cc")) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  constexpr size_t kWidth = 92;
  size_t column = 0;
  for (const absl::CommandLineFlag* flag : flags) {
    column = std::max(column, flag->Name().size() + 6);
  }
  std::string text = absl::StrCat(kUsage, "\nflags (before the command, as --flag=value):\n");
  for (const absl::CommandLineFlag* flag : flags) {
    // Each description says the flag's default where it has one that matters.
    const std::string description = flag->Help();
    std::string line = absl::StrCat("  --", flag->Name());
    line.resize(column, ' ');
    for (absl::string_view word : absl::StrSplit(description, ' ', absl::SkipEmpty())) {
      if (line.size() > column && line.size() + 1 + word.size() > kWidth) {
        absl::StrAppend(&text, line, "\n");
        line = std::string(column, ' ');
      }
      absl::StrAppend(&line, line.size() > column ? " " : "", word);
    }
    absl::StrAppend(&text, line, "\n");
  }
  return text;
}

// Flushes stdout. False, with the reason on stderr, when `what` was not all written there (a
// full disk, a closed descriptor, a pipe whose reader went away): the shell user would
// otherwise take the exit status 0 for a result they never got.
bool FlushStdout(absl::string_view what) {
  errno = 0;
  const bool flushed = fflush(stdout) == 0;
  const int error = errno;
  if (flushed && !ferror(stdout) && std::cout.good()) return true;
  std::cerr << "error: cannot write " << what << " to stdout"
            << (error != 0 ? absl::StrCat(": ", strerror(error)) : "") << std::endl;
  return false;
}

// Holds each of stdin, stdout and stderr that the CLI was started without (`ffibox ... >&-`)
// with /dev/null opened read-only. Otherwise the next descriptor opened (gRPC's epoll or
// eventfd descriptor, a socket to ffiboxd) takes its number and the result is written into
// it; held, writes to it fail with EBADF as they would to the closed descriptor, and
// FlushStdout says so.
void HoldClosedStandardDescriptors() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    // The lowest free number is `fd`: those below it are open or held already.
    const int held = open("/dev/null", O_RDONLY);
    if (held >= 0 && held != fd) close(held);
  }
}

// Prints `status` as `error: CODE: message [details]` on stderr.
void PrintError(const absl::Status& status) {
  const v1::Error error = ToProtoError(status);
  std::string text(status.message());
  const std::string code_name = v1::ErrorCode_Name(error.code());
  if (!absl::StartsWith(text, absl::StrCat(code_name, ":"))) {
    text = absl::StrCat(absl::StatusCodeToString(status.code()), ": ", text);
  }
  std::vector<std::string> details;
  if (error.signal() != 0) {
    const char* name = sigabbrev_np(error.signal());
    details.push_back(absl::StrCat("signal=", error.signal(),
                                   name != nullptr ? absl::StrCat(" (SIG", name, ")") : ""));
  }
  if (error.code() == v1::WORKER_CRASHED && error.signal() == 0 && error.exit_code() >= 0) {
    details.push_back(absl::StrCat("exit_code=", error.exit_code()));
  }
  if (error.fault_address() != 0) {
    details.push_back(absl::StrFormat("fault_address=0x%x", error.fault_address()));
  }
  if (!error.function().empty()) details.push_back(absl::StrCat("function=", error.function()));
  if (!error.syscall().empty()) details.push_back(absl::StrCat("syscall=", error.syscall()));
  if (!error.field().empty()) details.push_back(absl::StrCat("field=", error.field()));
  std::cerr << "error: " << text;
  if (!details.empty()) std::cerr << " [" << absl::StrJoin(details, ", ") << "]";
  std::cerr << std::endl;
}

// Replaces a string result that came back as a worker address by the string it points to.
// A wchar_t* one comes so when it holds a unit that is no character (a lone surrogate): its
// units are read raw, and `*printed` is set to the result line (no text can carry them).
absl::Status ResolveStringResult(Session& session, const v1::Type& type, v1::Value* value,
                                 std::optional<std::string>* printed) {
  const bool wide = type.scalar() == v1::WSTRING;
  if ((type.scalar() != v1::CSTRING && !wide) || !value->has_pointer() ||
      !value->pointer().has_remote() || value->pointer().remote().address() == 0) {
    return absl::OkStatus();
  }
  const RemotePtr at(value->pointer().remote().address(), value->pointer().remote().generation());
  if (wide) {
    absl::StatusOr<std::u32string> units = session.ReadWString(at);
    if (!units.ok()) return units.status();
    *printed = "L" + WideQuote(*units);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> text = session.ReadCString(at);
  if (!text.ok()) return text.status();
  value->set_bytes_value(*std::move(text));
  return absl::OkStatus();
}

int RunCall(const std::string& library_path, const std::string& declaration_text,
            const std::vector<std::string>& words) {
  if (library_path.empty()) {
    PrintError(ErrorStatus(v1::INVALID_ARGUMENT, "the library path is empty"));
    return kExitUsage;
  }
  // The protocol carries a call's deadline in a uint32 of milliseconds.
  const int64_t timeout_ms = absl::GetFlag(FLAGS_timeout_ms);
  if (timeout_ms < 0 || timeout_ms > std::numeric_limits<uint32_t>::max()) {
    PrintError(ErrorStatus(v1::INVALID_ARGUMENT,
                           absl::StrCat("--timeout_ms=", timeout_ms, " is not between 0 and ",
                                        std::numeric_limits<uint32_t>::max())));
    return kExitUsage;
  }
  if (absl::StatusOr<std::vector<std::string>> layers =
          ExpandJailLayers(absl::GetFlag(FLAGS_require_jail), "--require_jail");
      !layers.ok()) {
    PrintError(layers.status());
    return kExitUsage;
  }
  absl::StatusOr<CDeclaration> declaration = ParseCDeclaration(declaration_text);
  if (!declaration.ok()) {
    PrintError(declaration.status());
    return kExitUsage;
  }
  // Validate the argument words before reaching for the server (generation 1 for now).
  if (absl::StatusOr<v1::Call> check = BuildCall(*declaration, words, 1); !check.ok()) {
    PrintError(check.status());
    return kExitUsage;
  }

  ConnectFlags connect_flags;
  connect_flags.token = absl::GetFlag(FLAGS_token);
  connect_flags.token_file = absl::GetFlag(FLAGS_token_file);
  connect_flags.tls = absl::GetFlag(FLAGS_tls);
  connect_flags.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  connect_flags.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  connect_flags.tls_key = absl::GetFlag(FLAGS_tls_key);
  connect_flags.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  absl::StatusOr<ConnectOptions> connect_options = ConnectOptionsFromFlags(connect_flags);
  if (!connect_options.ok()) {
    PrintError(connect_options.status());
    return kExitUsage;
  }
  std::string address = absl::GetFlag(FLAGS_address);
  if (address.empty()) address = DefaultAddress();
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(address, *connect_options);
  if (!client.ok()) {
    PrintError(client.status());
    return kExitFailure;
  }
  SessionOptions session_options;
  session_options.required_jail_layers = absl::GetFlag(FLAGS_require_jail);
  // What the library prints goes where the shell user sees it, in order with the result.
  session_options.on_output = [](v1::OutputStream stream, absl::string_view bytes) {
    FILE* target = stream == v1::STDOUT ? stdout : stderr;
    fwrite(bytes.data(), 1, bytes.size(), target);
    fflush(target);
  };
  absl::StatusOr<std::unique_ptr<Session>> session = (*client)->OpenSession(session_options);
  if (!session.ok()) {
    PrintError(session.status());
    return kExitFailure;
  }
  if (absl::GetFlag(FLAGS_show_jail)) {
    const v1::SessionOpened& info = (*session)->info();
    fprintf(stderr, "jail: %s\n",
            info.jail_layers().empty() ? "none" : absl::StrJoin(info.jail_layers(), ", ").c_str());
    for (const std::string& waived : info.waived_jail_layers()) {
      fprintf(stderr, "jail WAIVED: %s\n", waived.c_str());
    }
  }
  // The load, the resolve and the call go to the server back to back (pipelined); the
  // first failure among them is what the call returns.
  const Library library = (*session)->LoadAsync(library_path);
  const RawFunction function = library.ResolveAsync(declaration->name, declaration->signature);
  // The session's first worker is generation 1.
  absl::StatusOr<v1::Call> call =
      BuildCall(*declaration, words, std::max<uint64_t>((*session)->generation(), 1));
  if (!call.ok()) {
    PrintError(call.status());
    return kExitUsage;
  }
  const bool print_errno = absl::GetFlag(FLAGS_print_errno);
  call->set_capture_errno(print_errno);
  CallOptions options;
  options.timeout = absl::Milliseconds(timeout_ms);
  absl::StatusOr<v1::CallResult> result = function.Call(*std::move(call), options);
  if (!result.ok()) {
    PrintError(result.status());
    return kExitFailure;
  }
  if (declaration->signature.has_result()) {
    const v1::Type& type = declaration->signature.result();
    std::optional<std::string> printed;
    if (absl::Status read =
            ResolveStringResult(**session, type, result->mutable_result(), &printed);
        !read.ok()) {
      PrintError(read);
      return kExitFailure;
    }
    absl::StatusOr<std::string> text =
        printed.has_value() ? *std::move(printed) : FormatResult(type, result->result());
    if (!text.ok()) {
      PrintError(text.status());
      return kExitFailure;
    }
    std::cout << *text << "\n";
  }
  if (print_errno) {
    if (!result->has_errno_value()) {
      PrintError(ErrorStatus(v1::INTERNAL, "the server's answer carries no errno"));
      return kExitFailure;
    }
    std::cout << "errno " << result->errno_value() << "\n";
  }
  const bool written = FlushStdout("the result");
  (*session)->Close().IgnoreError();
  return written ? 0 : kExitFailure;
}

int RunBindgen(const std::vector<std::string>& words) {
  absl::StatusOr<BindgenRequest> request = ParseBindgenArguments(words);
  if (!request.ok()) {
    PrintError(request.status());
    std::cerr << kBindgenUsage;
    return kExitUsage;
  }
  absl::StatusOr<std::string> bindings = GenerateBindings(*request);
  if (!bindings.ok()) {
    PrintError(bindings.status());
    return kExitFailure;
  }
  std::cout << *bindings;
  return FlushStdout("the bindings") ? 0 : kExitFailure;
}

int Main(int argc, char** argv) {
  HoldClosedStandardDescriptors();
  absl::SetProgramUsageMessage(kUsage);
  // Flags end at the first word that is not a flag (or after "--"), so that negative numbers
  // among the call's arguments are not taken for flags.
  int command = 1;
  while (command < argc && argv[command][0] == '-' && std::string(argv[command]) != "--" &&
         std::string(argv[command]) != "-") {
    ++command;
  }
  // --help (-h) among the flags prints what every usage error points at, and nothing else.
  for (int i = 1; i < command; ++i) {
    const std::string word = argv[i];
    if (word == "--help" || word == "-help" || word == "-h") {
      std::cout << HelpText();
      return FlushStdout("the usage") ? 0 : kExitFailure;
    }
  }
  std::vector<char*> flag_words(argv, argv + command);
  if (absl::Status flags = CheckFlagWords(std::vector<std::string>(argv + 1, argv + command));
      !flags.ok()) {
    PrintError(flags);
    std::cerr << "(ffibox --help for details)\n";
    return kExitUsage;
  }
  absl::ParseCommandLine(static_cast<int>(flag_words.size()), flag_words.data());
  if (command < argc && std::string(argv[command]) == "--") ++command;
  std::vector<std::string> words(argv + command, argv + argc);

  if (!words.empty() && words[0] == "bindgen") {
    return RunBindgen(std::vector<std::string>(words.begin() + 1, words.end()));
  }
  if (words.size() < 3 || words[0] != "call") {
    if (words.empty()) {
      std::cerr << "error: no command given: call or bindgen\n";
    } else if (words[0] != "call") {
      std::cerr << "error: unknown command '" << absl::CHexEscape(words[0])
                << "': call or bindgen\n";
    } else if (words.size() == 2 &&
               (words[1] == "--help" || words[1] == "-help" || words[1] == "-h")) {
      std::cout << HelpText();  // `ffibox call --help`
      return FlushStdout("the usage") ? 0 : kExitFailure;
    } else {
      std::cerr << "error: call needs a library and a declaration\n";
    }
    std::cerr << "usage: ffibox [--address=ADDR] [--timeout_ms=N] [--print_errno] call LIB "
                 "'DECLARATION' [ARG...]\n"
              << "       " << kBindgenUsage + 7 << "(ffibox --help for details)\n";
    return kExitUsage;
  }
  return RunCall(words[1], words[2], std::vector<std::string>(words.begin() + 3, words.end()));
}

}  // namespace
}  // namespace cli
}  // namespace ffibox

int main(int argc, char** argv) { return ffibox::cli::Main(argc, argv); }
