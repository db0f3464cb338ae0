#include "client/cli/connect_flags.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/status_macros.h"

namespace ffibox {
namespace cli {
namespace {

absl::Status FlagError(absl::string_view flag, absl::string_view message) {
  return ErrorStatus(v1::INVALID_ARGUMENT, absl::StrCat("--", flag, ": ", message));
}

// The whole of `path`, which must not be empty nor larger than kMaxFlagFileBytes. Read in
// chunks up to that bound, so that a device that never ends (/dev/zero) or a pipe that keeps
// writing is refused instead of read until memory runs out. Opened without blocking, so that
// a FIFO nobody writes to reads as empty instead of waiting for a writer forever; a pipe with
// a writer (`--token_file=<(command)`) is then read as it writes.
absl::StatusOr<std::string> ReadFlagFile(absl::string_view flag, const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return FlagError(flag, absl::StrCat("cannot read ", path, ": ", strerror(errno)));
  absl::Cleanup close_fd = [fd] { close(fd); };
  const int status_flags = fcntl(fd, F_GETFL);
  if (status_flags < 0 || fcntl(fd, F_SETFL, status_flags & ~O_NONBLOCK) < 0) {
    return FlagError(flag, absl::StrCat("cannot read ", path, ": ", strerror(errno)));
  }
  std::string contents;
  char chunk[64 * 1024];
  while (contents.size() <= kMaxFlagFileBytes) {
    const ssize_t got = read(fd, chunk, sizeof(chunk));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return FlagError(flag, absl::StrCat("cannot read ", path, ": ", strerror(errno)));
    if (got == 0) break;
    contents.append(chunk, static_cast<size_t>(got));
  }
  if (contents.size() > kMaxFlagFileBytes) {
    return FlagError(flag, absl::StrCat(path, " is larger than ", kMaxFlagFileBytes >> 20,
                                        " MiB, the most a flag's file may hold"));
  }
  if (contents.empty()) return FlagError(flag, absl::StrCat(path, " is empty"));
  return contents;
}

// A bearer token goes in an `authorization` header: visible ASCII only.
absl::Status CheckToken(absl::string_view flag, absl::string_view token) {
  if (token.empty()) return FlagError(flag, "the token is empty");
  for (char c : token) {
    if (c <= ' ' || c > '~') {
      return FlagError(flag, "the token has a space, a control or a non-ASCII character");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ConnectOptions> ConnectOptionsFromFlags(const ConnectFlags& flags) {
  ConnectOptions options;
  if (!flags.token.empty() && !flags.token_file.empty()) {
    return FlagError("token_file", "give --token or --token_file, not both");
  }
  if (!flags.token.empty()) {
    FFIBOX_RETURN_IF_ERROR(CheckToken("token", flags.token));
    options.bearer_token = flags.token;
  }
  if (!flags.token_file.empty()) {
    FFIBOX_ASSIGN_OR_RETURN(std::string token, ReadFlagFile("token_file", flags.token_file));
    // As ffiboxd reads its token files: surrounding whitespace is not part of the token.
    options.bearer_token = std::string(absl::StripAsciiWhitespace(token));
    FFIBOX_RETURN_IF_ERROR(CheckToken("token_file", options.bearer_token));
  }
  if (flags.tls_cert.empty() != flags.tls_key.empty()) {
    return FlagError(flags.tls_cert.empty() ? "tls_key" : "tls_cert",
                     "a client certificate needs both --tls_cert and --tls_key");
  }
  if (!flags.tls_ca.empty()) {
    FFIBOX_ASSIGN_OR_RETURN(options.tls_root_certs, ReadFlagFile("tls_ca", flags.tls_ca));
  }
  if (!flags.tls_cert.empty()) {
    FFIBOX_ASSIGN_OR_RETURN(options.tls_client_cert_chain,
                            ReadFlagFile("tls_cert", flags.tls_cert));
    FFIBOX_ASSIGN_OR_RETURN(options.tls_client_key, ReadFlagFile("tls_key", flags.tls_key));
  }
  options.tls_server_name = flags.tls_server_name;
  options.tls = flags.tls || !flags.tls_ca.empty() || !flags.tls_cert.empty() ||
                !flags.tls_server_name.empty();
  return options;
}

}  // namespace cli
}  // namespace ffibox
