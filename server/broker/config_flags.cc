#include "server/broker/config_flags.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

ABSL_FLAG(std::vector<std::string>, listen, {},
          "addresses to listen on, comma-separated: unix:/ABSOLUTE/PATH or host:port (TCP "
          "needs --tls_cert_file and --tls_key_file); replaces the file's listeners (default: "
          "$FFIBOX_ADDRESS, else an owner-only socket, see docs/configuration.md)");
ABSL_FLAG(std::string, tls_cert_file, "", "PEM server certificate for TCP addresses of --listen");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key for TCP addresses of --listen");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA for client certificates (mutual TLS) on TCP addresses of --listen");
ABSL_FLAG(std::string, worker, "",
          "path of the ffibox-worker binary (default: next to ffiboxd, else in "
          "../libexec/ffibox relative to it, as installed)");
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
ABSL_FLAG(int64_t, max_block_bytes, 256 << 20,
          "most memory-block bytes one call, or one batch of calls, may carry");
ABSL_FLAG(int64_t, max_batch_calls, 4096,
          "most calls one Batch request may carry; more get RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_sessions, 256, "most sessions open at once on this server");
ABSL_FLAG(int64_t, max_sessions_per_identity, 64,
          "most sessions open at once per client identity (an identity may set its own)");
ABSL_FLAG(int64_t, session_memory_bytes, 4LL << 30,
          "memory cap of each session's worker (RLIMIT_AS, and its cgroup's resident memory); "
          "0: none");
ABSL_FLAG(int64_t, session_cpu_seconds, 3600,
          "CPU-time cap of each session's worker (RLIMIT_CPU); 0: none");
ABSL_FLAG(int64_t, worker_pids_max, 256,
          "threads and processes one worker may have (its cgroup's pids.max, else its own "
          "RLIMIT_NPROC)");
ABSL_FLAG(int64_t, idle_cpu_percent, 10,
          "CPU share, in percent of one CPU, of a worker whose session has no request in flight "
          "(cgroup layer); 0: no throttle");
ABSL_FLAG(int64_t, max_buffered_reply_bytes, 1LL << 30,
          "bytes of unfinished worker replies the broker holds across all sessions; past it "
          "it stops reading from workers until replies complete");
ABSL_FLAG(int64_t, max_session_signature_bytes, 16 << 20,
          "encoded bytes of function signatures and callback definitions one session keeps "
          "at once; resolves and callbacks beyond it get RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, total_worker_memory_bytes, 0,
          "resident memory of all workers together (cgroup layer; default: half the machine)");
ABSL_FLAG(std::vector<std::string>, allow_root, {},
          "directory whose libraries sessions may load, besides the system library "
          "directories; repeatable and comma-separated; adds to the file's "
          "allowed_library_roots");
ABSL_FLAG(int64_t, pool_size, 2, "idle pre-started workers kept ready (0: no pool)");
ABSL_FLAG(bool, jail, true, "jail the workers (--nojail: crash isolation only)");
ABSL_FLAG(std::string, jail_policy, "strict", "seccomp policy: strict or permissive");
ABSL_FLAG(std::vector<std::string>, waive_jail_layer, {},
          "jail layers to run without when this host cannot provide them (user, pid, net, "
          "ipc, uts, mount, filesystem, proc, cgroup); repeatable and comma-separated; adds to the "
          "file's jail.waive_layers. Without a waiver a missing layer stops ffiboxd");
ABSL_FLAG(std::vector<std::string>, jail_visible_path, {},
          "directory shown read-only in every worker's filesystem view (libraries need not "
          "be: the broker hands the worker a descriptor); repeatable and comma-separated; "
          "adds to the file's jail.visible_paths");
ABSL_FLAG(std::vector<std::string>, allow_env, {},
          "environment variable names or globs (SDL_*, LANG) sessions may set for their "
          "workers; repeatable and comma-separated; adds to the file's jail.env_allow "
          "(default: none)");
ABSL_FLAG(std::string, metrics_listen, "",
          "serve Prometheus metrics at http://HOST:PORT/metrics (an IPv4 address; [IPv6] only "
          "with a civetweb built with IPv6; port 0: any free port). No authentication: bind to "
          "loopback or a private network. "
          "Sets the file's metrics.listen (default: no metrics listener)");
ABSL_FLAG(std::string, scratch_root, "",
          "directory where sessions that ask for one get a writable scratch directory shown "
          "to their workers (sets the file's jail.scratch_root; default: none, sessions "
          "cannot have one)");

namespace ffibox {
namespace {

using config::v1::ServerConfig;

// Whether --name (or --noname, for a bool) is among `arguments` (this Abseil keeps
// CommandLineFlag::IsSpecifiedOnCommandLine private).
bool Specified(const std::vector<std::string>& arguments, absl::string_view name) {
  for (const std::string& argument : arguments) {
    absl::string_view arg = argument;
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--") && !absl::ConsumePrefix(&arg, "-")) continue;
    arg = arg.substr(0, arg.find('='));
    if (arg == name || (absl::ConsumePrefix(&arg, "no") && arg == name)) return true;
  }
  return false;
}

// Every value of a repeatable list flag (absl keeps only the last occurrence).
std::vector<std::string> AllValues(const std::vector<std::string>& arguments,
                                   absl::string_view name) {
  std::vector<std::string> values;
  for (size_t i = 0; i < arguments.size(); ++i) {
    absl::string_view arg = arguments[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--") && !absl::ConsumePrefix(&arg, "-")) continue;
    if (!absl::ConsumePrefix(&arg, name)) continue;
    std::string value;
    if (absl::ConsumePrefix(&arg, "=")) {
      value = std::string(arg);
    } else if (arg.empty() && i + 1 < arguments.size()) {
      value = arguments[++i];
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

}  // namespace

absl::Status ApplyFlags(const std::vector<std::string>& arguments, ServerConfig* config) {
  if (Specified(arguments, "listen")) {
    config->clear_listeners();
    for (const std::string& address : absl::GetFlag(FLAGS_listen)) {
      config::v1::Listener* listener = config->add_listeners();
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
  if (Specified(arguments, "worker")) config->set_worker_path(absl::GetFlag(FLAGS_worker));
  config::v1::Limits* limits = config->mutable_limits();
  // The flag names are the Limits field names.
  const std::pair<const char*, int64_t> values[] = {
      {"call_timeout_ms", absl::GetFlag(FLAGS_call_timeout_ms)},
      {"max_call_timeout_ms", absl::GetFlag(FLAGS_max_call_timeout_ms)},
      {"max_message_bytes", absl::GetFlag(FLAGS_max_message_bytes)},
      {"max_callbacks", absl::GetFlag(FLAGS_max_callbacks)},
      {"max_callback_depth", absl::GetFlag(FLAGS_max_callback_depth)},
      {"max_block_bytes", absl::GetFlag(FLAGS_max_block_bytes)},
      {"max_batch_calls", absl::GetFlag(FLAGS_max_batch_calls)},
      {"max_sessions", absl::GetFlag(FLAGS_max_sessions)},
      {"max_sessions_per_identity", absl::GetFlag(FLAGS_max_sessions_per_identity)},
      {"session_memory_bytes", absl::GetFlag(FLAGS_session_memory_bytes)},
      {"session_cpu_seconds", absl::GetFlag(FLAGS_session_cpu_seconds)},
      {"worker_pids_max", absl::GetFlag(FLAGS_worker_pids_max)},
      {"idle_cpu_percent", absl::GetFlag(FLAGS_idle_cpu_percent)},
      {"total_worker_memory_bytes", absl::GetFlag(FLAGS_total_worker_memory_bytes)},
      {"max_buffered_reply_bytes", absl::GetFlag(FLAGS_max_buffered_reply_bytes)},
      {"max_session_signature_bytes", absl::GetFlag(FLAGS_max_session_signature_bytes)},
  };
  for (const auto& [name, raw] : values) {
    if (!Specified(arguments, name)) continue;
    absl::StatusOr<uint64_t> value = NonNegative(name, raw);
    if (!value.ok()) return value.status();
    if ((absl::string_view(name) == "max_sessions" ||
         absl::string_view(name) == "idle_cpu_percent" ||
         absl::string_view(name) == "max_sessions_per_identity" ||
         absl::string_view(name) == "max_callbacks" ||
         absl::string_view(name) == "max_callback_depth" ||
         absl::string_view(name) == "max_batch_calls") &&
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
  for (const std::string& root : AllValues(arguments, "allow_root")) {
    config->add_allowed_library_roots(root);
  }
  for (const std::string& layer : AllValues(arguments, "waive_jail_layer")) {
    config->mutable_jail()->add_waive_layers(layer);
  }
  for (const std::string& path : AllValues(arguments, "jail_visible_path")) {
    config->mutable_jail()->add_visible_paths(path);
  }
  for (const std::string& pattern : AllValues(arguments, "allow_env")) {
    config->mutable_jail()->add_env_allow(pattern);
  }
  if (Specified(arguments, "scratch_root")) {
    config->mutable_jail()->set_scratch_root(absl::GetFlag(FLAGS_scratch_root));
  }
  if (Specified(arguments, "metrics_listen")) {
    config->mutable_metrics()->set_listen(absl::GetFlag(FLAGS_metrics_listen));
  }
  if (Specified(arguments, "pool_size")) {
    absl::StatusOr<uint64_t> size = NonNegative("pool_size", absl::GetFlag(FLAGS_pool_size));
    if (!size.ok()) return size.status();
    if (*size > UINT32_MAX) return absl::InvalidArgumentError("--pool_size is too large");
    config->mutable_worker_pool()->set_size(static_cast<uint32_t>(*size));
  }
  if (Specified(arguments, "jail")) config->mutable_jail()->set_enabled(absl::GetFlag(FLAGS_jail));
  if (Specified(arguments, "jail_policy")) {
    config->mutable_jail()->set_policy(absl::GetFlag(FLAGS_jail_policy));
  }
  return absl::OkStatus();
}

}  // namespace ffibox
