#include "server/metrics/http_exporter.h"

#include <arpa/inet.h>
#include <string.h>

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "civetweb.h"
#include "core/host_port.h"

namespace ffibox {
namespace metrics {
namespace {

// Threads civetweb answers with: a scrape every few seconds needs little.
constexpr char kServerThreads[] = "2";
// A client that stalls a request is dropped after this long.
constexpr char kRequestTimeoutMs[] = "10000";

// Checks "IPV4:PORT" or "[IPV6]:PORT" (port 0..65535); sets the host as written and the port.
absl::Status ParseAddress(absl::string_view address, std::string* host, int* port) {
  const auto invalid = [&address] {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics address \"", address,
        "\" is not HOST:PORT with an IPv4 or [IPv6] address (\"127.0.0.1:9464\", \"[::1]:9464\")"));
  };
  const std::optional<HostPort> split = SplitHostPort(address);
  if (!split.has_value()) return invalid();
  const absl::string_view host_part = split->host;
  unsigned char binary[16];
  if (host_part.front() == '[' && host_part.back() == ']' && host_part.size() > 2) {
    const std::string inner(host_part.substr(1, host_part.size() - 2));
    if (inet_pton(AF_INET6, inner.c_str(), binary) != 1) return invalid();
    if (!HttpExporter::SupportsIpv6()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metrics address \"", address,
          "\": this civetweb was built without IPv6 (Debian's is); use an IPv4 address"));
    }
  } else if (inet_pton(AF_INET, std::string(host_part).c_str(), binary) != 1) {
    return invalid();
  }
  *host = std::string(host_part);
  *port = split->port;
  return absl::OkStatus();
}

int HandleNotFound(struct mg_connection* connection, void*) {
  mg_send_http_error(connection, 404, "%s", "not found; metrics are at /metrics\n");
  return 404;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpExporter>> HttpExporter::Start(absl::string_view address,
                                                                  const Registry* registry) {
  std::string host;
  int port = 0;
  absl::Status parsed = ParseAddress(address, &host, &port);
  if (!parsed.ok()) return parsed;
  mg_init_library(0);
  std::unique_ptr<HttpExporter> exporter(new HttpExporter(registry));
  const std::string listening_ports = absl::StrCat(host, ":", port);
  // No document_root: civetweb serves no file, only the handlers below.
  const char* options[] = {
      "listening_ports",    listening_ports.c_str(), "num_threads", kServerThreads,
      "request_timeout_ms", kRequestTimeoutMs,       nullptr};
  struct mg_callbacks callbacks;
  memset(&callbacks, 0, sizeof(callbacks));
  struct mg_init_data init;
  memset(&init, 0, sizeof(init));
  init.callbacks = &callbacks;
  init.user_data = exporter.get();
  init.configuration_options = options;
  char error_text[256] = "";
  unsigned error_code = 0;
  struct mg_error_data error;
  memset(&error, 0, sizeof(error));
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof(error_text);
  exporter->context_ = mg_start2(&init, &error);
  if (exporter->context_ == nullptr) {
    mg_exit_library();
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ",
                     error_text[0] != '\0' ? error_text : "the HTTP server did not start"));
  }
  mg_set_request_handler(exporter->context_, "/metrics$", &HttpExporter::HandleMetrics,
                         exporter.get());
  mg_set_request_handler(exporter->context_, "/", &HandleNotFound, nullptr);
  struct mg_server_port ports[1];
  memset(ports, 0, sizeof(ports));
  if (mg_get_server_ports(exporter->context_, 1, ports) == 1) port = ports[0].port;
  exporter->port_ = port;
  exporter->address_ = absl::StrCat(host, ":", port);
  return exporter;
}

HttpExporter::~HttpExporter() {
  if (context_ == nullptr) return;
  mg_stop(context_);
  mg_exit_library();
}

bool HttpExporter::SupportsIpv6() {
  constexpr unsigned kFeatureIpv6 = 8;  // civetweb.h, mg_check_feature
  return mg_check_feature(kFeatureIpv6) != 0;
}

int HttpExporter::HandleMetrics(struct mg_connection* connection, void* exporter) {
  const struct mg_request_info* request = mg_get_request_info(connection);
  const bool head = strcmp(request->request_method, "HEAD") == 0;
  if (!head && strcmp(request->request_method, "GET") != 0) {
    mg_send_http_error(connection, 405, "%s", "only GET and HEAD are served\n");
    return 405;
  }
  const std::string text = static_cast<const HttpExporter*>(exporter)->registry_->Render();
  mg_send_http_ok(connection, kTextContentType, static_cast<long long>(text.size()));
  if (!head) mg_write(connection, text.data(), text.size());
  return 200;
}

}  // namespace metrics
}  // namespace ffibox
