#include "server/broker/config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "server/broker/listen_address.h"
#include "server/jail/jail_layers.h"

namespace ffibox {
namespace {

using config::v1::ServerConfig;

constexpr uint32_t kDefaultMaxSessions = 256;
constexpr uint32_t kDefaultMaxSessionsPerIdentity = 64;
constexpr uint64_t kDefaultMaxMessageBytes = 16 << 20;
constexpr uint64_t kDefaultCallTimeoutMs = 30000;
constexpr uint64_t kDefaultMaxCallTimeoutMs = 24ull * 3600 * 1000;
constexpr uint32_t kDefaultMaxCallbacks = 4096;
constexpr uint64_t kDefaultMaxSessionSignatureBytes = uint64_t{16} << 20;
constexpr uint32_t kDefaultMaxCallbackDepth = 64;
constexpr uint64_t kMinSessionMemoryBytes = 32ull << 20;
// Why these defaults (docs/configuration.md): nsjail's 4 GiB address space; an hour of CPU
// per worker; 256 threads and processes per worker (the host's pids stay for others); a
// tenth of a CPU for whatever a library leaves running while its session is idle.
constexpr uint64_t kDefaultSessionMemoryBytes = 4ull << 30;
constexpr uint64_t kDefaultSessionCpuSeconds = 3600;
constexpr uint64_t kDefaultWorkerPidsMax = 256;
constexpr uint32_t kDefaultIdleCpuPercent = 10;
constexpr uint64_t kDefaultTmpBytes = 16 << 20;
constexpr uint32_t kDefaultPoolSize = 2;
constexpr uint32_t kMaxPoolSize = 1024;
constexpr size_t kMinTokenLength = 16;

absl::Status FieldError(absl::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

// Collects the first error of a text-format parse, with its position.
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (error_.empty()) error_ = absl::StrCat(line + 1, ":", column + 1, ": ", message);
  }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

absl::StatusOr<std::string> ReadWholeFile(const std::string& path, absl::string_view field) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return FieldError(field, absl::StrCat("cannot read ", path, ": ", strerror(errno)));
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// value, or `fallback` when value is 0; INVALID_ARGUMENT unless within [low, high].
absl::StatusOr<uint64_t> InRange(uint64_t value, uint64_t fallback, uint64_t low, uint64_t high,
                                 absl::string_view field) {
  if (value == 0) value = fallback;
  if (value < low || value > high) {
    return FieldError(field, absl::StrCat(value, " is out of range (", low, " to ", high, ")"));
  }
  return value;
}

bool IsPlainName(absl::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
           c == '@';
  });
}

absl::StatusOr<ListenerSettings> ResolveListener(const config::v1::Listener& listener,
                                                 absl::string_view field) {
  ListenerSettings settings;
  switch (listener.address_case()) {
    case config::v1::Listener::kUnixPath:
      if (listener.unix_path().empty() || listener.unix_path()[0] != '/') {
        return FieldError(absl::StrCat(field, ".unix_path"), "must be an absolute path");
      }
      if (listener.has_tls()) {
        return FieldError(absl::StrCat(field, ".tls"),
                          "applies to TCP listeners only (a unix socket is protected by its "
                          "owner-only directory)");
      }
      settings.address = absl::StrCat("unix:", listener.unix_path());
      settings.unix_socket = true;
      return settings;
    case config::v1::Listener::kTcpAddress:
      break;
    case config::v1::Listener::ADDRESS_NOT_SET:
      return FieldError(field, "set unix_path or tcp_address");
  }
  const std::string& address = listener.tcp_address();
  if (absl::Status valid = ValidateTcpListenAddress(address); !valid.ok()) {
    return FieldError(absl::StrCat(field, ".tcp_address"), valid.message());
  }
  if (!listener.has_tls() || listener.tls().cert_file().empty() ||
      listener.tls().key_file().empty()) {
    return FieldError(field,
                      absl::StrCat("the TCP listener ", address,
                                   " needs TLS: set tls.cert_file and tls.key_file (flags "
                                   "--tls_cert_file, --tls_key_file); ffiboxd never serves TCP "
                                   "without TLS"));
  }
  settings.address = address;
  absl::StatusOr<std::string> cert =
      ReadWholeFile(listener.tls().cert_file(), absl::StrCat(field, ".tls.cert_file"));
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key =
      ReadWholeFile(listener.tls().key_file(), absl::StrCat(field, ".tls.key_file"));
  if (!key.ok()) return key.status();
  settings.server_cert_pem = *std::move(cert);
  settings.server_key_pem = *std::move(key);
  if (!listener.tls().client_ca_file().empty()) {
    absl::StatusOr<std::string> ca =
        ReadWholeFile(listener.tls().client_ca_file(), absl::StrCat(field, ".tls.client_ca_file"));
    if (!ca.ok()) return ca.status();
    settings.client_ca_pem = *std::move(ca);
  }
  return settings;
}

absl::StatusOr<std::vector<std::string>> ResolveRoots(
    const google::protobuf::RepeatedPtrField<std::string>& roots, absl::string_view field) {
  std::vector<std::string> resolved;
  for (int i = 0; i < roots.size(); ++i) {
    absl::StatusOr<std::string> root = CanonicalLibraryRoot(roots[i]);
    if (!root.ok()) return FieldError(absl::StrCat(field, "[", i, "]"), root.status().message());
    resolved.push_back(*std::move(root));
  }
  return resolved;
}

absl::Status ResolveLimits(const config::v1::Limits& limits, ServerSettings* settings) {
  SessionConfig& session = settings->session;
  absl::StatusOr<uint64_t> value =
      InRange(limits.max_sessions(), kDefaultMaxSessions, 1, 1 << 20, "limits.max_sessions");
  if (!value.ok()) return value.status();
  settings->access.max_sessions = static_cast<uint32_t>(*value);
  value = InRange(limits.max_message_bytes(), kDefaultMaxMessageBytes, 1024, 512ull << 20,
                  "limits.max_message_bytes");
  if (!value.ok()) return value.status();
  session.max_message_bytes = *value;
  value = InRange(limits.max_call_timeout_ms(), kDefaultMaxCallTimeoutMs, 1,
                  365ull * 24 * 3600 * 1000, "limits.max_call_timeout_ms");
  if (!value.ok()) return value.status();
  session.max_call_timeout = absl::Milliseconds(*value);
  value = InRange(limits.call_timeout_ms(), std::min(kDefaultCallTimeoutMs, *value), 1, *value,
                  "limits.call_timeout_ms (at most limits.max_call_timeout_ms)");
  if (!value.ok()) return value.status();
  session.default_call_timeout = absl::Milliseconds(*value);
  value = InRange(limits.max_callbacks(), kDefaultMaxCallbacks, 1, 1 << 24, "limits.max_callbacks");
  if (!value.ok()) return value.status();
  session.max_callbacks = *value;
  value = InRange(limits.max_callback_depth(), kDefaultMaxCallbackDepth, 1, 1024,
                  "limits.max_callback_depth");
  if (!value.ok()) return value.status();
  session.max_callback_depth = static_cast<int>(*value);
  value = InRange(limits.max_block_bytes(), TypeLimits().max_block_bytes, 1, 4ull << 30,
                  "limits.max_block_bytes");
  if (!value.ok()) return value.status();
  session.type_limits.max_block_bytes = *value;
  value = InRange(limits.max_batch_calls(), TypeLimits().max_batch_calls, 1, 1 << 20,
                  "limits.max_batch_calls");
  if (!value.ok()) return value.status();
  session.type_limits.max_batch_calls = *value;
  value = InRange(limits.max_session_signature_bytes(), kDefaultMaxSessionSignatureBytes, 64 << 10,
                  4ull << 30, "limits.max_session_signature_bytes");
  if (!value.ok()) return value.status();
  session.max_signature_bytes = *value;
  const uint64_t memory = limits.has_session_memory_bytes() ? limits.session_memory_bytes()
                                                            : kDefaultSessionMemoryBytes;
  if (memory != 0 && memory < kMinSessionMemoryBytes) {
    return FieldError("limits.session_memory_bytes",
                      absl::StrCat(memory, " is below the minimum of ", kMinSessionMemoryBytes,
                                   " (a worker needs that much to start)"));
  }
  session.jail.address_space_bytes = memory;
  const uint64_t cpu =
      limits.has_session_cpu_seconds() ? limits.session_cpu_seconds() : kDefaultSessionCpuSeconds;
  if (cpu > 365ull * 24 * 3600) return FieldError("limits.session_cpu_seconds", "more than a year");
  session.jail.cpu_seconds = cpu;
  value = InRange(limits.worker_pids_max(), kDefaultWorkerPidsMax, 16, 1 << 22,
                  "limits.worker_pids_max");
  if (!value.ok()) return value.status();
  session.jail.worker_pids_max = *value;
  const uint32_t idle =
      limits.has_idle_cpu_percent() ? limits.idle_cpu_percent() : kDefaultIdleCpuPercent;
  if (idle > 100) return FieldError("limits.idle_cpu_percent", "more than 100 (one whole CPU)");
  session.jail.idle_cpu_percent = idle;
  uint64_t total = limits.total_worker_memory_bytes();
  if (total == 0) {
    const long pages = sysconf(_SC_PHYS_PAGES);
    const long page_size = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page_size > 0) total = static_cast<uint64_t>(pages) * page_size / 2;
  } else if (total < kMinSessionMemoryBytes) {
    return FieldError("limits.total_worker_memory_bytes",
                      absl::StrCat(total, " is below the minimum of ", kMinSessionMemoryBytes));
  }
  session.jail.total_worker_memory_bytes = total;
  value = InRange(limits.max_buffered_reply_bytes(), uint64_t{1} << 30, uint64_t{64} << 20,
                  uint64_t{1} << 40, "limits.max_buffered_reply_bytes");
  if (!value.ok()) return value.status();
  settings->max_buffered_reply_bytes = *value;
  return absl::OkStatus();
}

absl::Status ResolveJail(const config::v1::Jail& file, JailOptions* jail,
                         std::vector<std::string>* waivers) {
  jail->enabled = !file.has_enabled() || file.enabled();
  jail->seccomp_policy = file.policy().empty() ? "strict" : file.policy();
  if (jail->seccomp_policy != "strict" && jail->seccomp_policy != "permissive") {
    return FieldError("jail.policy", absl::StrCat("unknown policy \"", file.policy(),
                                                  "\" (known: strict, permissive)"));
  }
  for (int i = 0; i < file.extra_syscalls_size(); ++i) {
    const std::string& name = file.extra_syscalls(i);
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
          return absl::ascii_islower(static_cast<unsigned char>(c)) ||
                 absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '_';
        })) {
      return FieldError(absl::StrCat("jail.extra_syscalls[", i, "]"),
                        absl::StrCat("\"", name, "\" is not a system call name"));
    }
    jail->extra_syscalls.push_back(name);
  }
  jail->tmp_bytes = file.tmp_bytes() == 0 ? kDefaultTmpBytes : file.tmp_bytes();
  for (int i = 0; i < file.waive_layers_size(); ++i) {
    if (!JailLayerByKey(file.waive_layers(i)).has_value()) {
      return FieldError(absl::StrCat("jail.waive_layers[", i, "]"),
                        absl::StrCat("unknown jail layer \"", file.waive_layers(i),
                                     "\" (the layers: user, pid, net, ipc, uts, mount, "
                                     "filesystem, proc, cgroup)"));
    }
    waivers->push_back(file.waive_layers(i));
  }
  for (int i = 0; i < file.visible_paths_size(); ++i) {
    absl::StatusOr<std::string> path = CanonicalLibraryRoot(file.visible_paths(i));
    if (!path.ok()) {
      return FieldError(absl::StrCat("jail.visible_paths[", i, "]"), path.status().message());
    }
    if (*path == "/") {
      return FieldError(absl::StrCat("jail.visible_paths[", i, "]"),
                        "\"/\" would show the whole host filesystem to every worker");
    }
    jail->visible_paths.push_back(*std::move(path));
  }
  return absl::OkStatus();
}

absl::Status ResolveIdentities(const ServerConfig& config,
                               const std::vector<std::string>& default_roots, uint32_t per_identity,
                               ServerSettings* settings) {
  AccessPolicy& access = settings->access;
  access.local_identity = config.local_identity().empty() ? "local" : config.local_identity();
  if (!IsPlainName(access.local_identity)) {
    return FieldError("local_identity", "use letters, digits, '_', '-', '.' or '@'");
  }
  absl::flat_hash_set<std::string> names;
  absl::flat_hash_set<std::string> tokens;
  for (int i = 0; i < config.identities_size(); ++i) {
    const config::v1::Identity& configured = config.identities(i);
    const std::string field = absl::StrCat("identities[", i, "]");
    ClientIdentity identity;
    identity.name = configured.name();
    if (!IsPlainName(identity.name)) {
      return FieldError(absl::StrCat(field, ".name"),
                        "must be 1 to 128 letters, digits, '_', '-', '.' or '@'");
    }
    if (!names.insert(identity.name).second) {
      return FieldError(absl::StrCat(field, ".name"),
                        absl::StrCat("\"", identity.name, "\" is configured twice"));
    }
    if (!configured.bearer_token().empty() && !configured.token_file().empty()) {
      return FieldError(field, "set bearer_token or token_file, not both");
    }
    identity.bearer_token = configured.bearer_token();
    if (!configured.token_file().empty()) {
      absl::StatusOr<std::string> token =
          ReadWholeFile(configured.token_file(), absl::StrCat(field, ".token_file"));
      if (!token.ok()) return token.status();
      identity.bearer_token = std::string(absl::StripAsciiWhitespace(*token));
    }
    const std::string token_field =
        absl::StrCat(field, configured.token_file().empty() ? ".bearer_token" : ".token_file");
    if (identity.bearer_token.empty() && identity.name != access.local_identity) {
      return FieldError(field, "needs a bearer_token or a token_file");
    }
    if (!identity.bearer_token.empty()) {
      if (identity.bearer_token.size() < kMinTokenLength) {
        return FieldError(token_field, absl::StrCat("a token must have at least ", kMinTokenLength,
                                                    " characters"));
      }
      if (std::any_of(identity.bearer_token.begin(), identity.bearer_token.end(),
                      [](char c) { return !absl::ascii_isgraph(static_cast<unsigned char>(c)); })) {
        return FieldError(token_field, "a token must be printable ASCII without spaces");
      }
      if (!tokens.insert(identity.bearer_token).second) {
        return FieldError(token_field, "the same token is configured for two identities");
      }
    }
    absl::StatusOr<std::vector<std::string>> roots = ResolveRoots(
        configured.allowed_library_roots(), absl::StrCat(field, ".allowed_library_roots"));
    if (!roots.ok()) return roots.status();
    identity.library_roots = roots->empty() ? default_roots : *std::move(roots);
    identity.max_sessions =
        configured.max_sessions() == 0 ? per_identity : configured.max_sessions();
    identity.client_cert_name = configured.client_cert_name();
    identity.disabled = configured.disabled();
    access.identities.push_back(std::move(identity));
  }
  if (!names.contains(access.local_identity)) {
    ClientIdentity local;
    local.name = access.local_identity;
    local.library_roots = default_roots;
    local.max_sessions = per_identity;
    access.identities.push_back(std::move(local));
  }
  // Each identity's allowlist. The jail's view does not show the roots: the broker hands
  // the worker a descriptor of each library it admits.
  for (const ClientIdentity& identity : access.identities) {
    absl::StatusOr<std::shared_ptr<const LibraryAllowlist>> allowlist =
        LibraryAllowlist::Create(identity.library_roots, /*skip_missing=*/true);
    if (!allowlist.ok()) return allowlist.status();
    access.allowlists[identity.name] = *std::move(allowlist);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ServerConfig> ParseServerConfig(absl::string_view text, absl::string_view origin) {
  ServerConfig config;
  google::protobuf::TextFormat::Parser parser;
  FirstErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), &config)) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ":", errors.error()));
  }
  return config;
}

absl::StatusOr<ServerConfig> ReadServerConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadWholeFile(path, "--config");
  if (!text.ok()) return text.status();
  return ParseServerConfig(*text, path);
}

absl::StatusOr<ServerSettings> ResolveServerConfig(const ServerConfig& config,
                                                   const std::string& default_address,
                                                   const std::string& default_worker) {
  ServerSettings settings;
  settings.session.worker_path =
      config.worker_path().empty() ? default_worker : config.worker_path();
  for (int i = 0; i < config.listeners_size(); ++i) {
    absl::StatusOr<ListenerSettings> listener =
        ResolveListener(config.listeners(i), absl::StrCat("listeners[", i, "]"));
    if (!listener.ok()) return listener.status();
    settings.listeners.push_back(*std::move(listener));
  }
  if (settings.listeners.empty()) {
    config::v1::Listener fallback;
    if (absl::StartsWith(default_address, "unix:")) {
      fallback.set_unix_path(default_address.substr(5));
    } else {
      fallback.set_tcp_address(default_address);
    }
    absl::StatusOr<ListenerSettings> listener =
        ResolveListener(fallback, "listeners (the default address)");
    if (!listener.ok()) return listener.status();
    settings.listeners.push_back(*std::move(listener));
  }

  absl::Status status = ResolveLimits(config.limits(), &settings);
  if (!status.ok()) return status;
  status = ResolveJail(config.jail(), &settings.session.jail, &settings.jail_waivers);
  if (!status.ok()) return status;
  for (int i = 0; i < config.jail().env_allow_size(); ++i) {
    const std::string& pattern = config.jail().env_allow(i);
    if (pattern.empty() || pattern.find_first_of("=\0") != std::string::npos) {
      return FieldError(absl::StrCat("jail.env_allow[", i, "]"),
                        "a variable name or glob (\"LANG\", \"SDL_*\") without '='");
    }
    settings.session.env_allow.push_back(pattern);
  }
  if (!config.jail().scratch_root().empty()) {
    if (config.jail().scratch_root()[0] != '/') {
      return FieldError("jail.scratch_root", "must be an absolute path");
    }
    settings.session.scratch_root = config.jail().scratch_root();  // prepared at startup
  }

  absl::StatusOr<uint64_t> per_identity =
      InRange(config.limits().max_sessions_per_identity(), kDefaultMaxSessionsPerIdentity, 1,
              1 << 20, "limits.max_sessions_per_identity");
  if (!per_identity.ok()) return per_identity.status();
  absl::StatusOr<std::vector<std::string>> default_roots =
      ResolveRoots(config.allowed_library_roots(), "allowed_library_roots");
  if (!default_roots.ok()) return default_roots.status();
  if (!config.has_include_system_library_roots() || config.include_system_library_roots()) {
    default_roots->insert(default_roots->begin(), SystemLibraryDirectories().begin(),
                          SystemLibraryDirectories().end());
  }
  if (default_roots->empty()) {
    return FieldError("allowed_library_roots",
                      "no library could be loaded: set roots or include the system ones");
  }
  status =
      ResolveIdentities(config, *default_roots, static_cast<uint32_t>(*per_identity), &settings);
  if (!status.ok()) return status;

  const uint32_t pool_size =
      config.worker_pool().has_size() ? config.worker_pool().size() : kDefaultPoolSize;
  if (pool_size > kMaxPoolSize) {
    return FieldError("worker_pool.size", absl::StrCat(pool_size, " is more than ", kMaxPoolSize));
  }
  settings.pool_size = pool_size;
  // Checked when ffiboxd starts serving it (server/metrics/http_exporter.h).
  settings.metrics_listen = config.metrics().listen();
  return settings;
}

}  // namespace ffibox
