// ffiboxd's configuration: the ServerConfig file (proto/ffibox/config/v1/config.proto, in
// protobuf text format) checked and turned into the settings the broker runs with.
//
// ffiboxd_main reads the file, lets command-line flags override fields of the parsed
// message, then calls ResolveServerConfig once at startup. Every failure is an
// INVALID_ARGUMENT whose message starts with the offending field's path
// ("limits.max_message_bytes: ..."), so a bad configuration stops the server with an error
// the operator can act on; nothing here aborts.
#ifndef FFIBOX_SERVER_BROKER_CONFIG_H_
#define FFIBOX_SERVER_BROKER_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ffibox/config/v1/config.pb.h"
#include "server/broker/service.h"
#include "server/broker/session.h"

namespace ffibox {

// One resolved listener.
struct ListenerSettings {
  std::string address;  // gRPC target: "unix:/path" or "host:port"
  bool unix_socket = false;
  // TCP only (always set there): PEM contents read from the tls files.
  std::string server_cert_pem;
  std::string server_key_pem;
  std::string client_ca_pem;  // empty: no client certificates (plain TLS)
};

// Everything ffiboxd runs with.
struct ServerSettings {
  std::vector<ListenerSettings> listeners;
  SessionConfig session;  // allowlist and pool are set per session / by ffiboxd_main
  AccessPolicy access;
  uint32_t pool_size = 2;
  // The bytes of unfinished worker replies the broker holds at once (limits.
  // max_buffered_reply_bytes; server/broker/worker_connection.h).
  uint64_t max_buffered_reply_bytes = uint64_t{1} << 30;
  // Where Prometheus metrics are served (metrics.listen, --metrics_listen); empty: nowhere.
  std::string metrics_listen;
  // Jail layers the operator lets ffiboxd run without (jail.waive_layers and
  // --waive_jail_layer), checked by DecideJailLayers at startup.
  std::vector<std::string> jail_waivers;
};

// Parses `text` (protobuf text format). INVALID_ARGUMENT "<origin>:LINE:COLUMN: ..." for a
// syntax error or an unknown field.
absl::StatusOr<config::v1::ServerConfig> ParseServerConfig(absl::string_view text,
                                                           absl::string_view origin);

// Reads and parses the file at `path`. INVALID_ARGUMENT when it cannot be read or parsed.
absl::StatusOr<config::v1::ServerConfig> ReadServerConfig(const std::string& path);

// Checks `config`, fills in defaults, reads token and TLS files and resolves library roots.
// `default_address` is used when no listener is configured; `default_worker` when
// worker_path is empty. INVALID_ARGUMENT naming the field for any bad value, including a
// TCP listener without TLS.
absl::StatusOr<ServerSettings> ResolveServerConfig(const config::v1::ServerConfig& config,
                                                   const std::string& default_address,
                                                   const std::string& default_worker);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_CONFIG_H_
