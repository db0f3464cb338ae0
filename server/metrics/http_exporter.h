// Serves a metrics Registry over HTTP for Prometheus to scrape: GET (or HEAD) /metrics
// answers the registry's text; other paths are 404, other methods 405. The HTTP server is
// civetweb (Debian's libcivetweb), serving no files, on a couple of its own threads.
//
// There is no authentication and no TLS: bind it to loopback or a private network
// (docs/configuration.md). ffiboxd starts one when --metrics_listen is given.
#ifndef FFIBOX_SERVER_METRICS_HTTP_EXPORTER_H_
#define FFIBOX_SERVER_METRICS_HTTP_EXPORTER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/metrics/metrics.h"

struct mg_context;
struct mg_connection;

namespace ffibox {
namespace metrics {

class HttpExporter {
 public:
  // Serves `registry` (not owned; must outlive the exporter) on `address`: "HOST:PORT" with
  // an IPv4 address or a bracketed IPv6 address as HOST ("127.0.0.1:9464", "[::1]:9464"),
  // port 0 for any free port. INVALID_ARGUMENT for another form, and for an IPv6 address
  // when civetweb was built without IPv6 (Debian 12's was: SupportsIpv6); UNAVAILABLE when
  // the address cannot be bound (the message has civetweb's reason).
  static absl::StatusOr<std::unique_ptr<HttpExporter>> Start(absl::string_view address,
                                                             const Registry* registry);

  HttpExporter(const HttpExporter&) = delete;
  HttpExporter& operator=(const HttpExporter&) = delete;
  // Stops serving (waits for requests being answered).
  ~HttpExporter();

  // The address actually bound, as "HOST:PORT" (with the port chosen for port 0).
  const std::string& address() const { return address_; }
  int port() const { return port_; }

  // Whether the civetweb this links can listen on IPv6 addresses.
  static bool SupportsIpv6();

 private:
  HttpExporter(const Registry* registry) : registry_(registry) {}

  // civetweb's request handler for /metrics.
  static int HandleMetrics(::mg_connection* connection, void* exporter);

  const Registry* const registry_;
  mg_context* context_ = nullptr;
  std::string address_;
  int port_ = 0;
};

}  // namespace metrics
}  // namespace ffibox

#endif  // FFIBOX_SERVER_METRICS_HTTP_EXPORTER_H_
