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

#include "absl/cleanup/cleanup.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/default_address.h"
#include "core/keepalive.h"
#include "core/malloc_tuning.h"
#include "core/mutex_mode.h"
#include "core/thread_name.h"
#include "google/protobuf/stubs/logging.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/server_credentials.h"
#include "server/broker/broker_metrics.h"
#include "server/broker/config.h"
#include "server/broker/config_flags.h"
#include "server/broker/connection_acceptor.h"
#include "server/broker/deadline_timer.h"
#include "server/broker/grpc_pollers.h"
#include "server/broker/limited_log.h"
#include "server/broker/listen_address.h"
#include "server/broker/local_door.h"
#include "server/broker/private_directory.h"
#include "server/broker/scratch_directory.h"
#include "server/broker/service.h"
#include "server/broker/session.h"
#include "server/broker/standard_services.h"
#include "server/broker/worker_connection.h"
#include "server/broker/worker_location.h"
#include "server/broker/worker_pool.h"
#include "server/broker/worker_process.h"
#include "server/jail/cgroups.h"
#include "server/jail/jail_check.h"
#include "server/jail/jail_layers.h"
#include "server/metrics/http_exporter.h"
#include "server/metrics/metrics.h"

ABSL_FLAG(std::string, config, "",
          "server configuration file in protobuf text format (proto/ffibox/config/v1/"
          "config.proto); the flags below override its fields");
ABSL_FLAG(bool, exit_with_parent, false,
          "exit when the process that started ffiboxd exits (used by clients that start a "
          "private server)");
ABSL_FLAG(std::string, private_directory, "",
          "a directory made for this server alone (mode 0700, the server's user), where a "
          "client that starts a private server keeps its socket, its log ffiboxd.log and its "
          "scratch root: removed when ffiboxd shuts down (the log, the scratch root and then "
          "the directory, unless something else is in it)");
ABSL_FLAG(std::string, health_listen, "",
          "HOST:PORT of a plaintext TCP listener that serves only grpc.health.v1.Health, for "
          "probes that cannot speak TLS (Kubernetes' grpc probes); port 0 picks a free one");
ABSL_FLAG(int64_t, health_idle_timeout_ms, 60000,
          "connections to --health_listen with no call open for this long are closed (at "
          "least 100 ms; a probe opens one per probe, a health-checking channel keeps a Watch "
          "open)");
ABSL_FLAG(int64_t, handshake_timeout_ms, 10000,
          "TCP connections that have not completed their TLS handshake, and unix socket "
          "connections that have not sent the HTTP/2 preface, by then are closed");

namespace {

using ffibox::config::v1::ServerConfig;

int Fail(const std::string& message) {
  fprintf(stderr, "ffiboxd: %s\n", message.c_str());
  return 1;
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

// Raises the soft limit of `resource` to its hard limit.
void RaiseSoftLimit(int resource) {
  struct rlimit limit;
  if (getrlimit(resource, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(resource, &limit);
  }
}

// Raises the soft RLIMIT_NOFILE to the hard limit: every connection and every worker start
// costs descriptors, and running out must only ever refuse work, never weaken a jail.
void RaiseDescriptorLimit() { RaiseSoftLimit(RLIMIT_NOFILE); }

// Raises the soft RLIMIT_FSIZE to the hard limit and ignores SIGXFSZ: a file ffiboxd makes
// past it (a same-host channel's shared area, a library's copy) then fails that one
// operation with EFBIG instead of killing the server with every session. Workers get the
// default action back and a limit of their own (the jail's rlimits).
void RaiseFileSizeLimit() {
  RaiseSoftLimit(RLIMIT_FSIZE);
  signal(SIGXFSZ, SIG_IGN);
}

// Starts one worker with the decided layers and discards it: the filesystem view and /proc
// can only be tested by a real worker. A layer that fails is waived when the operator
// allowed it, else ffiboxd stops.
absl::Status CheckJailWithWorker(ffibox::SessionConfig& session,
                                 const std::vector<std::string>& waivers) {
  if (!session.jail.enabled) return absl::OkStatus();
  for (int attempt = 0; attempt < ffibox::kJailLayerCount; ++attempt) {
    absl::StatusOr<std::unique_ptr<ffibox::WorkerProcess>> worker =
        ffibox::WorkerProcess::Start(ffibox::WorkerLaunchOptionsFor(session));
    if (worker.ok()) {
      // Gone before the cgroup layer's tree is made: on cgroup v2 ffiboxd may have to leave
      // its cgroup for a leaf, and the cgroup must then hold no other process.
      (*worker)->Kill();
      (*worker)->Reap();
      return absl::OkStatus();
    }
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

// Protocol Buffers' own log lines, at most 20 a minute: a client can send a request protobuf
// complains about (a string that is not UTF-8) as often as it likes, and each is refused by
// its id, so its lines would otherwise grow the log without bound.
void RateLimitedProtobufLog(google::protobuf::LogLevel level, const char* filename, int line,
                            const std::string& message) {
  static ffibox::LimitedLog* const log = new ffibox::LimitedLog(20);
  const char* names[] = {"INFO", "WARNING", "ERROR", "FATAL"};
  log->Write(
      absl::StrCat("ffiboxd: [libprotobuf ", names[std::clamp(static_cast<int>(level), 0, 3)], " ",
                   filename, ":", line, "] ", message),
      /*always=*/level >= google::protobuf::LOGLEVEL_FATAL);
}

// "host:port" with the port gRPC actually bound (for port 0).
std::string BoundAddress(const std::string& address, int port) {
  return absl::StrCat(address.substr(0, address.rfind(':')), ":", port);
}

}  // namespace

namespace {

// What the shutdown watchdog (main) waits for: the signal, then the end of main.
struct ShutdownWatch {
  absl::Notification began, finished;
  std::vector<std::string> paths;  // the unix sockets, removed before the end
  absl::Mutex mu;
  // The private directory, removed before the end; null once main's own teardown, which
  // removes it, has begun.
  ffibox::PrivateDirectory* directory ABSL_GUARDED_BY(mu) = nullptr;
};
ShutdownWatch* g_shutdown_watch = nullptr;

// How long a shutdown may take after the signal (gRPC's drain has 2 s of it).
constexpr absl::Duration kShutdownGrace = absl::Seconds(20);

}  // namespace

int main(int argc, char** argv) {
  // Session threads share a few malloc arenas, and large transient buffers (worker replies,
  // client requests over kMappedAllocationBytes) go back to the system when freed: otherwise
  // glibc's per-thread arenas and dynamic mmap threshold keep what crash/restart cycles used
  // (tests/soak/soak.py measured +475 % RSS over 1000 cycles without these, flat with them).
  // Smaller bursts (a batch's messages, a call's buffer of a MiB) stay in the heaps for the
  // next one.
  mallopt(M_ARENA_MAX, 4);
  google::protobuf::SetLogHandler(&RateLimitedProtobufLog);
  ffibox::KeepFreedMemory();
  ffibox::UseReleaseMutexChecks();
  absl::SetProgramUsageMessage(
      "ffiboxd [--config=FILE] [--listen=unix:/path] [flags]: the ffibox broker\n"
      "ffiboxd --check-jail [flags]: check every layer of the worker jail on this host");
  // --check-jail (not an Abseil flag name): run the jail's self-check instead of serving.
  bool check_jail = false;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (absl::string_view(argv[i]) == "--check-jail") {
      check_jail = true;
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  argv[argc] = nullptr;
  absl::ParseCommandLine(argc, argv);
  // No process of another uid, and no worker, may read or write this process's memory.
  prctl(PR_SET_DUMPABLE, 0);
  RaiseDescriptorLimit();
  RaiseFileSizeLimit();

  // Block the shutdown signals in every thread; one thread waits for them. Before the
  // parent-death signal is armed, so that it is never taken by the default action.
  sigset_t shutdown_signals;
  sigemptyset(&shutdown_signals);
  sigaddset(&shutdown_signals, SIGINT);
  sigaddset(&shutdown_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &shutdown_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  pid_t parent = 0;
  if (absl::GetFlag(FLAGS_exit_with_parent)) {
    parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
  }
  // Claimed first, so that whatever ends this process after a parent that has gone, the
  // directory goes with it.
  std::unique_ptr<ffibox::PrivateDirectory> private_directory;
  if (!absl::GetFlag(FLAGS_private_directory).empty()) {
    absl::StatusOr<std::unique_ptr<ffibox::PrivateDirectory>> claimed =
        ffibox::PrivateDirectory::Claim(absl::GetFlag(FLAGS_private_directory), parent);
    if (!claimed.ok()) return Fail(std::string(claimed.status().message()));
    private_directory = *std::move(claimed);
  }
  if (parent != 0 && getppid() != parent) return 0;  // died before the signal was armed

  ServerConfig file;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    absl::StatusOr<ServerConfig> read = ffibox::ReadServerConfig(absl::GetFlag(FLAGS_config));
    if (!read.ok()) return Fail(absl::StrCat("bad configuration: ", read.status().message()));
    file = *std::move(read);
  }
  absl::Status applied = ffibox::ApplyFlags(std::vector<std::string>(argv + 1, argv + argc), &file);
  if (!applied.ok()) return Fail(std::string(applied.message()));
  absl::StatusOr<ffibox::ServerSettings> settings = ffibox::ResolveServerConfig(
      file, ffibox::DefaultAddress(), ffibox::DefaultWorkerPathForSelf());
  if (!settings.ok()) {
    return Fail(absl::StrCat("bad configuration: ", settings.status().message()));
  }
  const std::string health_listen = absl::GetFlag(FLAGS_health_listen);
  if (!health_listen.empty()) {
    absl::Status valid = ffibox::ValidateTcpListenAddress(health_listen);
    if (!valid.ok()) return Fail(absl::StrCat("--health_listen: ", valid.message()));
  }
  ffibox::SessionConfig& session = settings->session;
  // Every worker runs the binaries found now, whatever later happens to their files.
  absl::StatusOr<std::shared_ptr<const ffibox::WorkerExecutables>> executables =
      ffibox::WorkerExecutables::Open(session.worker_path);
  if (!executables.ok()) {
    return Fail(absl::StrCat(executables.status().message(), "; pass --worker=PATH"));
  }
  session.executables = *std::move(executables);
  const ffibox::JailOptions configured_jail = session.jail;
  absl::Status decided = ffibox::DecideJailLayers(&session.jail, settings->jail_waivers);
  if (!decided.ok()) return Fail(std::string(decided.message()));
  if (check_jail) {
    return ffibox::RunJailCheck(session.jail, session.worker_path, session.executables);
  }
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
  if (private_directory != nullptr) private_directory->SetScratchRoot(session.scratch_root);
  for (const ffibox::ListenerSettings& listener : settings->listeners) {
    if (!listener.unix_socket) continue;
    absl::Status prepared = ffibox::PrepareUnixListenAddress(listener.address);
    if (!prepared.ok()) return Fail(std::string(prepared.message()));
  }

  // The door of same-host channels (server/broker/local_door.h), beside the first unix
  // listener's socket; declared before the service, so it outlives every session. Without it
  // sessions are refused same-host channels, and everything else works.
  std::unique_ptr<ffibox::LocalChannelDoor> door;
  for (const ffibox::ListenerSettings& listener : settings->listeners) {
    if (!listener.unix_socket) continue;
    absl::StatusOr<std::unique_ptr<ffibox::LocalChannelDoor>> opened =
        ffibox::LocalChannelDoor::Open(absl::StrCat(listener.address.substr(5), "-local"));
    if (opened.ok()) {
      door = *std::move(opened);
      session.local_door = door.get();
    } else {
      fprintf(stderr, "ffiboxd: no same-host channels: %s\n",
              std::string(opened.status().message()).c_str());
    }
    break;
  }

  // Idle workers, started with the launch options every session's first worker uses.
  std::unique_ptr<ffibox::WorkerPool> pool;
  if (settings->pool_size > 0) {
    pool = std::make_unique<ffibox::WorkerPool>(ffibox::WorkerLaunchOptionsFor(session),
                                                settings->pool_size, session.cgroups,
                                                ffibox::DefaultWorkerCgroupLimits(session));
    session.pool = pool.get();
  }
  // Wakes workers' readers at deadlines; declared before the service, so it outlives every
  // session.
  ffibox::DeadlineTimer deadlines;
  session.deadlines = &deadlines;
  const size_t max_message = session.max_message_bytes;
  // Metrics, when asked for: counted from the first session on, served over HTTP from here
  // on (declared after the pool, so the exporter stops before the pool it samples goes).
  ffibox::metrics::Registry registry;
  std::unique_ptr<ffibox::BrokerMetrics> metrics;
  std::unique_ptr<ffibox::metrics::HttpExporter> exporter;
  if (!settings->metrics_listen.empty()) {
    absl::StatusOr<std::unique_ptr<ffibox::BrokerMetrics>> created =
        ffibox::BrokerMetrics::Create(&registry, pool.get());
    if (!created.ok()) return Fail(std::string(created.status().message()));
    metrics = *std::move(created);
    absl::StatusOr<std::unique_ptr<ffibox::metrics::HttpExporter>> started =
        ffibox::metrics::HttpExporter::Start(settings->metrics_listen, &registry);
    if (!started.ok()) {
      return Fail(absl::StrCat("metrics.listen: ", started.status().message()));
    }
    exporter = *std::move(started);
  }
  ffibox::FfiboxService service(session, std::move(settings->access), metrics.get());
  // grpc.health.v1.Health and reflection on every listener (server/broker/standard_services.h);
  // one health service, with one bound on its Watch streams, for every server. It outlives
  // them: declared before them, destroyed after.
  ffibox::EnableStandardServices();
  ffibox::HealthService health;
  grpc::ServerBuilder builder;
  std::vector<int> ports(settings->listeners.size(), 0);
  // Unix sockets are accepted by ffiboxd itself (server/broker/connection_acceptor.h); TCP by
  // gRPC.
  std::vector<std::unique_ptr<ffibox::ConnectionAcceptor>> acceptors;
  for (size_t i = 0; i < settings->listeners.size(); ++i) {
    const ffibox::ListenerSettings& listener = settings->listeners[i];
    if (listener.unix_socket) {
      absl::StatusOr<std::unique_ptr<ffibox::ConnectionAcceptor>> acceptor =
          ffibox::ConnectionAcceptor::ListenUnix(
              listener.address.substr(5),
              absl::Milliseconds(absl::GetFlag(FLAGS_handshake_timeout_ms)));
      if (!acceptor.ok()) return Fail(std::string(acceptor.status().message()));
      acceptors.push_back(*std::move(acceptor));
      continue;
    }
    builder.AddListeningPort(listener.address, CredentialsFor(listener), &ports[i]);
  }
  builder.RegisterService(&service);
  health.AddTo(&builder);
  // One thread that only polls, beside the health service's (server/broker/grpc_pollers.h).
  ffibox::GrpcPollers pollers(&builder);
  // gRPC's own cap sits well above the session limit, so an oversized request still arrives
  // and gets a typed RESOURCE_EXHAUSTED answer instead of ending the stream.
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<uint64_t>(4 * static_cast<uint64_t>(max_message), INT_MAX)));
  builder.SetMaxSendMessageSize(-1);
  // Keepalive (core/keepalive.h): clients' pings are taken as often as once a second, and
  // a client that vanished without closing its connection is noticed, its sessions ended.
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      static_cast<int>(absl::ToInt64Milliseconds(ffibox::kServerMinPingInterval)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      static_cast<int>(absl::ToInt64Milliseconds(ffibox::kServerKeepaliveTime)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(ffibox::kServerKeepaliveTimeout)));
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
  // ffiboxd listens only once the jail check above passed, so the layers the configuration
  // asks for are active (or waived by name); the health says so, and withdraws on shutdown.
  const std::vector<std::string> missing_layers =
      ffibox::MissingJailLayers(configured_jail, session.jail);
  health.Serve();
  pollers.Start(1);
  health.SetServing(missing_layers.empty());
  if (!missing_layers.empty()) {
    fprintf(stderr, "ffiboxd: NOT_SERVING: jail layers missing: %s\n",
            absl::StrJoin(missing_layers, ", ").c_str());
  }
  std::unique_ptr<grpc::Server> health_server;
  // The health service's and the pollers' queues are shut down and drained after the servers
  // were shut down and before they are destroyed, on every way out from here (declared after
  // them, it runs first).
  absl::Cleanup stop_queues = [&] {
    const auto now = std::chrono::system_clock::now();
    server->Shutdown(now);
    if (health_server != nullptr) health_server->Shutdown(now);
    health.Stop();
    pollers.Stop();
  };
  // Declared after the health server and the cleanup above: it stops accepting before either
  // runs.
  std::unique_ptr<ffibox::ConnectionAcceptor> health_acceptor;
  if (!health_listen.empty()) {
    absl::StatusOr<ffibox::HealthOnlyServer> started = ffibox::StartHealthOnlyServer(
        health_listen, &health, absl::Milliseconds(absl::GetFlag(FLAGS_handshake_timeout_ms)),
        absl::Milliseconds(absl::GetFlag(FLAGS_health_idle_timeout_ms)));
    if (!started.ok()) return Fail(std::string(started.status().message()));
    health_server = std::move(started->server);
    health_acceptor = std::move(started->acceptor);
    addresses.push_back(BoundAddress(health_listen, started->port));
  }
  for (auto& acceptor : acceptors) acceptor->Start(server.get());

  for (size_t i = 0; i < settings->listeners.size(); ++i) {
    printf("ffiboxd listening on %s%s\n", addresses[i].c_str(),
           settings->listeners[i].unix_socket
               ? ""
               : (settings->listeners[i].client_ca_pem.empty() ? " (TLS)" : " (mutual TLS)"));
  }
  if (health_server != nullptr) {
    printf("ffiboxd health on %s (plaintext, grpc.health.v1 only)\n", addresses.back().c_str());
  }
  if (exporter != nullptr) {
    printf("ffiboxd metrics on http://%s/metrics (no authentication)\n",
           exporter->address().c_str());
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

  // A shutdown that does not finish in time ends the process: gRPC's can wait for ever once
  // it could not start its threads (a task limit reached while serving), leaving a server
  // that serves no one. Started now, while threads can be; its state is never freed, as it
  // may outlive main.
  auto* shutdown_watch = new ShutdownWatch;
  {
    absl::MutexLock lock(&shutdown_watch->mu);
    shutdown_watch->directory = private_directory.get();
  }
  // Finished once main's objects are destroyed (sessions, their workers, the servers).
  g_shutdown_watch = shutdown_watch;
  atexit([] { g_shutdown_watch->finished.Notify(); });
  for (const ffibox::ListenerSettings& listener : settings->listeners) {
    if (!listener.unix_socket) continue;
    shutdown_watch->paths.push_back(listener.address.substr(5));
    shutdown_watch->paths.push_back(absl::StrCat(listener.address.substr(5), "-local"));
  }
  absl::StatusOr<std::thread> watchdog = ffibox::StartThread("ffibox-shutdown", [shutdown_watch] {
    shutdown_watch->began.WaitForNotification();
    if (shutdown_watch->finished.WaitForNotificationWithTimeout(kShutdownGrace)) return;
    fprintf(stderr, "ffiboxd: the shutdown did not finish in %s; exiting\n",
            absl::FormatDuration(kShutdownGrace).c_str());
    for (const std::string& path : shutdown_watch->paths) unlink(path.c_str());
    absl::MutexLock lock(&shutdown_watch->mu);  // held to the end: main's stays out
    if (shutdown_watch->directory != nullptr) shutdown_watch->directory->RemoveNow();
    _exit(1);  // the workers end with this process (their parent-death signal)
  });
  if (!watchdog.ok()) return Fail(std::string(watchdog.status().message()));
  watchdog->detach();

  absl::StatusOr<std::thread> waiter = ffibox::StartThread("ffibox-signals", [&] {
    int signal_number = 0;
    sigwait(&shutdown_signals, &signal_number);
    fprintf(stderr, "ffiboxd: signal %d, shutting down\n", signal_number);
    shutdown_watch->began.Notify();
    if (private_directory != nullptr) private_directory->Arm();
    // civetweb sees its stop flag within 2 s (its poll timeout): stop it while gRPC drains,
    // or after, when no thread can be had now (the task limit reached).
    absl::StatusOr<std::thread> metrics_stop =
        exporter == nullptr
            ? absl::StatusOr<std::thread>(std::thread())
            : ffibox::StartThread("ffibox-metrics", [&exporter] { exporter.reset(); });
    health.Withdraw();
    for (auto& acceptor : acceptors) acceptor->Stop();
    if (health_acceptor != nullptr) health_acceptor->Stop();
    // Both with a deadline: a grpc.health.v1 Watch never ends by itself, and anyone who
    // reaches the plaintext health port may hold one open.
    const auto drained = std::chrono::system_clock::now() + std::chrono::seconds(2);
    server->Shutdown(drained);
    if (health_server != nullptr) health_server->Shutdown(drained);
    if (!metrics_stop.ok()) exporter.reset();
    if (metrics_stop.ok() && metrics_stop->joinable()) metrics_stop->join();
  });
  if (!waiter.ok()) return Fail(std::string(waiter.status().message()));
  server->Wait();
  waiter->join();
  acceptors.clear();  // removes the socket files
  {
    // The private directory goes with its object now, never from the watchdog after.
    absl::MutexLock lock(&shutdown_watch->mu);
    shutdown_watch->directory = nullptr;
  }
  return 0;  // stop_queues runs before the servers are destroyed
}
