// ffiboxd: the ffibox broker. Serves the ffibox.v1.Ffibox gRPC service, runs each session's
// native code in its own ffibox-worker process, and never loads a user library itself.
//
// Configuration: an optional file (--config, protobuf text format, schema
// proto/ffibox/config/v1/config.proto) and flags for the common fields, which override the
// file. docs/configuration.md documents every field and flag.
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "core/default_address.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/server_credentials.h"
#include "server/config.h"
#include "server/jail/cgroups.h"
#include "server/jail/jail_layers.h"
#include "server/jail/sandbox_check.h"
#include "server/jail/spawn.h"
#include "server/listen_address.h"
#include "server/scratch_directory.h"
#include "server/service.h"
#include "server/session.h"
#include "server/unix_acceptor.h"
#include "server/worker_channel.h"
#include "server/worker_pool.h"
#include "server/worker_process.h"

ABSL_FLAG(std::string, config, "",
          "server configuration file in protobuf text format (proto/ffibox/config/v1/"
          "config.proto); the flags below override its fields");
ABSL_FLAG(std::vector<std::string>, listen, {},
          "addresses to listen on, comma-separated: unix:/ABSOLUTE/PATH or host:port (TCP "
          "needs --tls_cert_file and --tls_key_file); replaces the file's listeners (default: "
          "$FFIBOX_ADDRESS, else an owner-only socket, see docs/configuration.md)");
ABSL_FLAG(std::string, tls_cert_file, "", "PEM server certificate for TCP addresses of --listen");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key for TCP addresses of --listen");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA for client certificates (mutual TLS) on TCP addresses of --listen");
ABSL_FLAG(std::string, worker, "", "path of the ffibox-worker binary (default: next to ffiboxd)");
ABSL_FLAG(int64_t, call_timeout_ms, 30000, "default per-call deadline in milliseconds");
ABSL_FLAG(int64_t, max_call_timeout_ms, 24LL * 3600 * 1000,
          "largest deadline a client may ask for, in milliseconds");
ABSL_FLAG(int64_t, max_message_bytes, 16 << 20,
          "largest request a session accepts; larger requests get RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_callbacks, 4096,
          "most callbacks a session may have defined at once; more get RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_callback_depth, 64,
          "most callback invocations nested in one another (native code calls the client, "
          "which calls native code, ...); deeper requests get RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_block_bytes, 256 << 20, "most memory-block bytes one call may carry");
ABSL_FLAG(int64_t, max_sessions, 256, "most sessions open at once on this server");
ABSL_FLAG(int64_t, max_sessions_per_identity, 64,
          "most sessions open at once per client identity (an identity may set its own)");
ABSL_FLAG(int64_t, session_memory_bytes, 4LL << 30,
          "memory cap of each session's worker (RLIMIT_AS, and its cgroup's resident memory); "
          "0: none");
ABSL_FLAG(int64_t, session_cpu_seconds, 3600,
          "CPU-time cap of each session's worker (RLIMIT_CPU); 0: none");
ABSL_FLAG(int64_t, worker_pids_max, 256,
          "threads and processes one worker may have (cgroup layer)");
ABSL_FLAG(int64_t, idle_cpu_percent, 10,
          "CPU share, in percent of one CPU, of a worker whose session has no request in flight "
          "(cgroup layer); 0: no throttle");
ABSL_FLAG(int64_t, max_buffered_reply_bytes, 1LL << 30,
          "bytes of unfinished worker replies the broker holds across all sessions; past it "
          "it stops reading from workers until replies complete");
ABSL_FLAG(int64_t, total_worker_memory_bytes, 0,
          "resident memory of all workers together (cgroup layer; default: half the machine)");
ABSL_FLAG(std::vector<std::string>, allow_root, {},
          "directory whose libraries sessions may load, besides the system library "
          "directories; repeatable and comma-separated; adds to the file's "
          "allowed_library_roots");
ABSL_FLAG(int64_t, pool_size, 2, "idle pre-started workers kept ready (0: no pool)");
ABSL_FLAG(bool, sandbox, true, "jail the workers (--nosandbox: crash isolation only)");
ABSL_FLAG(std::string, sandbox_policy, "strict", "seccomp policy: strict or permissive");
ABSL_FLAG(std::vector<std::string>, waive_jail_layer, {},
          "jail layers to run without when this host cannot provide them (user, pid, net, "
          "ipc, uts, mount, filesystem, proc); repeatable and comma-separated; adds to the "
          "file's sandbox.waive_layers. Without a waiver a missing layer stops ffiboxd");
ABSL_FLAG(std::vector<std::string>, jail_visible_path, {},
          "directory shown read-only in every worker's filesystem view (libraries need not "
          "be: the broker hands the worker a descriptor); repeatable and comma-separated; "
          "adds to the file's sandbox.visible_paths");
ABSL_FLAG(std::vector<std::string>, allow_env, {},
          "environment variable names or globs (SDL_*, LANG) sessions may set for their "
          "workers; repeatable and comma-separated; adds to the file's sandbox.env_allow "
          "(default: none)");
ABSL_FLAG(std::string, scratch_root, "",
          "directory where sessions that ask for one get a writable scratch directory shown "
          "to their workers (sets the file's sandbox.scratch_root; default: none, sessions "
          "cannot have one)");
ABSL_FLAG(bool, exit_with_parent, false,
          "exit when the process that started ffiboxd exits (used by clients that start a "
          "private server)");
ABSL_FLAG(int64_t, handshake_timeout_ms, 10000,
          "TCP connections that have not completed their TLS handshake by then are closed");

namespace {

using ffibox::config::v1::ServerConfig;

std::string WorkerNextToSelf() {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return "ffibox-worker";
  std::string path(self, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/') + 1) + "ffibox-worker";
}

int Fail(const std::string& message) {
  fprintf(stderr, "ffiboxd: %s\n", message.c_str());
  return 1;
}

// The command line, for telling flags that were given from their defaults (this Abseil
// keeps CommandLineFlag::IsSpecifiedOnCommandLine private).
std::vector<std::string> given_arguments;

// Whether --name (or --noname, for a bool) was given on the command line.
bool Specified(absl::string_view name) {
  for (const std::string& argument : given_arguments) {
    absl::string_view arg = argument;
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--") && !absl::ConsumePrefix(&arg, "-")) continue;
    arg = arg.substr(0, arg.find('='));
    if (arg == name || (absl::ConsumePrefix(&arg, "no") && arg == name)) return true;
  }
  return false;
}

// Every value of a repeatable list flag (absl keeps only the last occurrence).
std::vector<std::string> AllValues(int argc, char** argv, absl::string_view name) {
  std::vector<std::string> values;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--") && !absl::ConsumePrefix(&arg, "-")) continue;
    if (!absl::ConsumePrefix(&arg, name)) continue;
    std::string value;
    if (absl::ConsumePrefix(&arg, "=")) {
      value = std::string(arg);
    } else if (arg.empty() && i + 1 < argc) {
      value = argv[++i];
    } else {
      continue;
    }
    for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipEmpty())) {
      values.emplace_back(part);
    }
  }
  return values;
}

// A non-negative flag value, or an error naming the flag.
absl::StatusOr<uint64_t> NonNegative(absl::string_view name, int64_t value) {
  if (value < 0)
    return absl::InvalidArgumentError(absl::StrCat("--", name, " must not be negative"));
  return static_cast<uint64_t>(value);
}

// Applies the flags given on the command line to `config`.
absl::Status ApplyFlags(int argc, char** argv, ServerConfig* config) {
  if (Specified("listen")) {
    config->clear_listeners();
    for (const std::string& address : absl::GetFlag(FLAGS_listen)) {
      ffibox::config::v1::Listener* listener = config->add_listeners();
      if (absl::StartsWith(address, "unix:")) {
        listener->set_unix_path(address.substr(5));
        continue;
      }
      listener->set_tcp_address(absl::StartsWith(address, "tcp:") ? address.substr(4) : address);
      if (!absl::GetFlag(FLAGS_tls_cert_file).empty()) {
        listener->mutable_tls()->set_cert_file(absl::GetFlag(FLAGS_tls_cert_file));
      }
      if (!absl::GetFlag(FLAGS_tls_key_file).empty()) {
        listener->mutable_tls()->set_key_file(absl::GetFlag(FLAGS_tls_key_file));
      }
      if (!absl::GetFlag(FLAGS_tls_client_ca_file).empty()) {
        listener->mutable_tls()->set_client_ca_file(absl::GetFlag(FLAGS_tls_client_ca_file));
      }
    }
  }
  if (Specified("worker")) config->set_worker_path(absl::GetFlag(FLAGS_worker));
  ffibox::config::v1::Limits* limits = config->mutable_limits();
  // The flag names are the Limits field names.
  const std::pair<const char*, int64_t> values[] = {
      {"call_timeout_ms", absl::GetFlag(FLAGS_call_timeout_ms)},
      {"max_call_timeout_ms", absl::GetFlag(FLAGS_max_call_timeout_ms)},
      {"max_message_bytes", absl::GetFlag(FLAGS_max_message_bytes)},
      {"max_callbacks", absl::GetFlag(FLAGS_max_callbacks)},
      {"max_callback_depth", absl::GetFlag(FLAGS_max_callback_depth)},
      {"max_block_bytes", absl::GetFlag(FLAGS_max_block_bytes)},
      {"max_sessions", absl::GetFlag(FLAGS_max_sessions)},
      {"max_sessions_per_identity", absl::GetFlag(FLAGS_max_sessions_per_identity)},
      {"session_memory_bytes", absl::GetFlag(FLAGS_session_memory_bytes)},
      {"session_cpu_seconds", absl::GetFlag(FLAGS_session_cpu_seconds)},
      {"worker_pids_max", absl::GetFlag(FLAGS_worker_pids_max)},
      {"idle_cpu_percent", absl::GetFlag(FLAGS_idle_cpu_percent)},
      {"total_worker_memory_bytes", absl::GetFlag(FLAGS_total_worker_memory_bytes)},
      {"max_buffered_reply_bytes", absl::GetFlag(FLAGS_max_buffered_reply_bytes)},
  };
  for (const auto& [name, raw] : values) {
    if (!Specified(name)) continue;
    absl::StatusOr<uint64_t> value = NonNegative(name, raw);
    if (!value.ok()) return value.status();
    if ((absl::string_view(name) == "max_sessions" ||
         absl::string_view(name) == "idle_cpu_percent" ||
         absl::string_view(name) == "max_sessions_per_identity" ||
         absl::string_view(name) == "max_callbacks" ||
         absl::string_view(name) == "max_callback_depth") &&
        *value > UINT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " is too large"));
    }
    const google::protobuf::FieldDescriptor* field = limits->GetDescriptor()->FindFieldByName(name);
    if (field == nullptr) return absl::InternalError(absl::StrCat("no limits field ", name));
    if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_UINT32) {
      limits->GetReflection()->SetUInt32(limits, field, static_cast<uint32_t>(*value));
    } else {
      limits->GetReflection()->SetUInt64(limits, field, *value);
    }
    // 0 means "the default" in the file; on the command line it must be a real value
    // except for the caps, where 0 means none.
    if (*value == 0 && absl::string_view(name) != "session_memory_bytes" &&
        absl::string_view(name) != "session_cpu_seconds" &&
        absl::string_view(name) != "idle_cpu_percent") {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " must be positive"));
    }
  }
  for (const std::string& root : AllValues(argc, argv, "allow_root")) {
    config->add_allowed_library_roots(root);
  }
  for (const std::string& layer : AllValues(argc, argv, "waive_jail_layer")) {
    config->mutable_sandbox()->add_waive_layers(layer);
  }
  for (const std::string& path : AllValues(argc, argv, "jail_visible_path")) {
    config->mutable_sandbox()->add_visible_paths(path);
  }
  for (const std::string& pattern : AllValues(argc, argv, "allow_env")) {
    config->mutable_sandbox()->add_env_allow(pattern);
  }
  if (Specified("scratch_root")) {
    config->mutable_sandbox()->set_scratch_root(absl::GetFlag(FLAGS_scratch_root));
  }
  if (Specified("pool_size")) {
    absl::StatusOr<uint64_t> size = NonNegative("pool_size", absl::GetFlag(FLAGS_pool_size));
    if (!size.ok()) return size.status();
    if (*size > UINT32_MAX) return absl::InvalidArgumentError("--pool_size is too large");
    config->mutable_worker_pool()->set_size(static_cast<uint32_t>(*size));
  }
  if (Specified("sandbox")) config->mutable_sandbox()->set_enabled(absl::GetFlag(FLAGS_sandbox));
  if (Specified("sandbox_policy")) {
    config->mutable_sandbox()->set_policy(absl::GetFlag(FLAGS_sandbox_policy));
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::ServerCredentials> CredentialsFor(const ffibox::ListenerSettings& listener) {
  if (listener.unix_socket) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      listener.client_ca_pem.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                     : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = listener.client_ca_pem;
  options.pem_key_cert_pairs.push_back({listener.server_key_pem, listener.server_cert_pem});
  return grpc::SslServerCredentials(options);
}

// Raises the soft RLIMIT_NOFILE to the hard limit: every connection and every worker start
// costs descriptors, and running out must only ever refuse work, never weaken a jail.
void RaiseDescriptorLimit() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// Starts one worker with the decided layers and discards it: the filesystem view and /proc
// can only be tested by a real worker. A layer that fails is waived when the operator
// allowed it, else ffiboxd stops.
absl::Status CheckJailWithWorker(ffibox::SessionConfig& session,
                                 const std::vector<std::string>& waivers) {
  if (!session.jail.enabled) return absl::OkStatus();
  for (int attempt = 0; attempt < ffibox::kJailLayerCount; ++attempt) {
    absl::StatusOr<std::unique_ptr<ffibox::WorkerProcess>> worker =
        ffibox::WorkerProcess::Start(ffibox::WorkerLaunchOptionsFor(session, 1));
    if (worker.ok()) return absl::OkStatus();
    std::optional<ffibox::JailLayer> layer = ffibox::FailedJailLayer(worker.status());
    if (!layer.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot start a jailed worker: ", worker.status().message()));
    }
    absl::Status waived =
        ffibox::WaiveFailedLayer(&session.jail, waivers, *layer, worker.status().message());
    if (!waived.ok()) return waived;
    if (*layer == ffibox::JailLayer::kFilesystem && session.jail.proc) {
      // /proc lives in the view; it goes with it, and must be waived too.
      absl::Status proc = ffibox::WaiveFailedLayer(&session.jail, waivers, ffibox::JailLayer::kProc,
                                                   "it needs the filesystem view");
      if (!proc.ok()) return proc;
    }
  }
  return absl::FailedPreconditionError("cannot start a jailed worker");
}

// "host:port" with the port gRPC actually bound (for port 0).
std::string BoundAddress(const std::string& address, int port) {
  return absl::StrCat(address.substr(0, address.rfind(':')), ":", port);
}

}  // namespace

int main(int argc, char** argv) {
  // Large transient buffers (worker replies, client requests) go back to the system when
  // freed, and session threads share a few malloc arenas: otherwise glibc's dynamic mmap
  // threshold and per-thread arenas keep what crash/restart cycles used (tests/soak/soak.py
  // measured +475 % RSS over 1000 cycles without these, flat with them).
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  mallopt(M_ARENA_MAX, 4);
  absl::SetProgramUsageMessage(
      "ffiboxd [--config=FILE] [--listen=unix:/path] [flags]: the ffibox broker\n"
      "ffiboxd --check-sandbox [flags]: check every layer of the worker jail on this host");
  // --check-sandbox (not an Abseil flag name): run the jail's self-check instead of serving.
  bool check_sandbox = false;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (absl::string_view(argv[i]) == "--check-sandbox") {
      check_sandbox = true;
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  argv[argc] = nullptr;
  given_arguments.assign(argv + 1, argv + argc);
  absl::ParseCommandLine(argc, argv);
  // No process of another uid, and no worker, may read or write this process's memory.
  prctl(PR_SET_DUMPABLE, 0);
  ffibox::HideBrokerCommandLineInJail(argc, argv, environ);
  RaiseDescriptorLimit();
  if (absl::GetFlag(FLAGS_exit_with_parent)) {
    const pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) return 0;  // the parent died before the signal was armed
  }

  // Block the shutdown signals in every thread; one thread waits for them.
  sigset_t shutdown_signals;
  sigemptyset(&shutdown_signals);
  sigaddset(&shutdown_signals, SIGINT);
  sigaddset(&shutdown_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &shutdown_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ServerConfig file;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    absl::StatusOr<ServerConfig> read = ffibox::ReadServerConfig(absl::GetFlag(FLAGS_config));
    if (!read.ok()) return Fail(absl::StrCat("bad configuration: ", read.status().message()));
    file = *std::move(read);
  }
  absl::Status applied = ApplyFlags(argc, argv, &file);
  if (!applied.ok()) return Fail(std::string(applied.message()));
  absl::StatusOr<ffibox::ServerSettings> settings =
      ffibox::ResolveServerConfig(file, ffibox::DefaultAddress(), WorkerNextToSelf());
  if (!settings.ok()) {
    return Fail(absl::StrCat("bad configuration: ", settings.status().message()));
  }
  ffibox::SessionConfig& session = settings->session;
  if (access(session.worker_path.c_str(), X_OK) != 0) {
    return Fail(absl::StrCat("worker binary ", session.worker_path,
                             " is not executable; pass --worker=PATH"));
  }
  absl::Status decided = ffibox::DecideJailLayers(&session.jail, settings->jail_waivers);
  if (!decided.ok()) return Fail(std::string(decided.message()));
  if (check_sandbox) return ffibox::RunSandboxCheck(session.jail, session.worker_path);
  absl::Status checked = CheckJailWithWorker(session, settings->jail_waivers);
  if (!checked.ok()) return Fail(std::string(checked.message()));
  for (const std::string& waived : session.jail.waived) {
    fprintf(stderr, "ffiboxd: WARNING: jail layer waived: %s\n", waived.c_str());
  }
  ffibox::SetBufferedFrameBytesLimit(settings->max_buffered_reply_bytes);
  // The cgroup layer: every worker's group is made under this tree (fail closed: the layer
  // was decided available, so a tree that cannot be made now stops ffiboxd).
  std::unique_ptr<ffibox::CgroupTree> cgroups;
  if (session.jail.enabled && session.jail.cgroup) {
    absl::StatusOr<std::unique_ptr<ffibox::CgroupTree>> tree =
        ffibox::CgroupTree::Create(session.jail.total_worker_memory_bytes);
    if (!tree.ok()) return Fail(absl::StrCat("cgroup layer: ", tree.status().message()));
    cgroups = *std::move(tree);
    session.cgroups = cgroups.get();
  }
  if (!session.scratch_root.empty()) {
    absl::StatusOr<std::string> root = ffibox::ScratchDirectory::PrepareRoot(session.scratch_root);
    if (!root.ok()) return Fail(std::string(root.status().message()));
    session.scratch_root = *root;
  }
  for (const ffibox::ListenerSettings& listener : settings->listeners) {
    if (!listener.unix_socket) continue;
    absl::Status prepared = ffibox::PrepareUnixListenAddress(listener.address);
    if (!prepared.ok()) return Fail(std::string(prepared.message()));
  }

  // Idle workers, started with the launch options every session's first worker uses.
  std::unique_ptr<ffibox::WorkerPool> pool;
  if (settings->pool_size > 0) {
    pool = std::make_unique<ffibox::WorkerPool>(ffibox::WorkerLaunchOptionsFor(session, 1),
                                                settings->pool_size);
    session.pool = pool.get();
  }
  const size_t max_message = session.max_message_bytes;
  ffibox::FfiboxService service(session, std::move(settings->access));
  grpc::ServerBuilder builder;
  std::vector<int> ports(settings->listeners.size(), 0);
  // Unix sockets are accepted by ffiboxd itself (server/unix_acceptor.h); TCP by gRPC.
  std::vector<std::unique_ptr<ffibox::UnixAcceptor>> acceptors;
  for (size_t i = 0; i < settings->listeners.size(); ++i) {
    const ffibox::ListenerSettings& listener = settings->listeners[i];
    if (listener.unix_socket) {
      absl::StatusOr<std::unique_ptr<ffibox::UnixAcceptor>> acceptor =
          ffibox::UnixAcceptor::Listen(listener.address.substr(5));
      if (!acceptor.ok()) return Fail(std::string(acceptor.status().message()));
      acceptors.push_back(*std::move(acceptor));
      continue;
    }
    builder.AddListeningPort(listener.address, CredentialsFor(listener), &ports[i]);
  }
  builder.RegisterService(&service);
  // gRPC's own cap sits well above the session limit, so an oversized request still arrives
  // and gets a typed RESOURCE_EXHAUSTED answer instead of ending the stream.
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<uint64_t>(4 * static_cast<uint64_t>(max_message), INT_MAX)));
  builder.SetMaxSendMessageSize(-1);
  // A peer that never finishes its TLS handshake must not hold a descriptor for long.
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             static_cast<int>(std::clamp<int64_t>(
                                 absl::GetFlag(FLAGS_handshake_timeout_ms), 100, INT_MAX)));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  std::vector<std::string> addresses;
  for (size_t i = 0; i < settings->listeners.size(); ++i) {
    const ffibox::ListenerSettings& listener = settings->listeners[i];
    // A TCP port that failed to bind reports 0 (unix sockets report no port).
    if (server != nullptr && !listener.unix_socket && ports[i] == 0) server = nullptr;
    addresses.push_back(listener.unix_socket ? listener.address
                                             : BoundAddress(listener.address, ports[i]));
  }
  if (server == nullptr) {
    std::vector<std::string> wanted;
    for (const ffibox::ListenerSettings& listener : settings->listeners) {
      wanted.push_back(listener.address);
    }
    return Fail(absl::StrCat("cannot listen on ", absl::StrJoin(wanted, ", ")));
  }
  for (auto& acceptor : acceptors) acceptor->Start(server.get());

  for (size_t i = 0; i < addresses.size(); ++i) {
    printf("ffiboxd listening on %s%s\n", addresses[i].c_str(),
           settings->listeners[i].unix_socket
               ? ""
               : (settings->listeners[i].client_ca_pem.empty() ? " (TLS)" : " (mutual TLS)"));
  }
  if (settings->listeners[0].unix_socket) {
    printf(
        "try (the CLI is bazel-bin/client/cli/ffibox): ffibox --address=%s call libm.so.6 "
        "'double cos(double)' 0.5\n",
        addresses[0].c_str());
  }
  fflush(stdout);
  // The jail's layers on this host (stderr: the first stdout line is the listening line).
  fprintf(stderr, "ffiboxd: %s\n", ffibox::DescribeJailLayers(session.jail).c_str());

  std::thread waiter([&] {
    int signal_number = 0;
    sigwait(&shutdown_signals, &signal_number);
    fprintf(stderr, "ffiboxd: signal %d, shutting down\n", signal_number);
    for (auto& acceptor : acceptors) acceptor->Stop();
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  });
  server->Wait();
  waiter.join();
  acceptors.clear();  // removes the socket files
  return 0;
}
