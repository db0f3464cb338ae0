// A plain HTTP/1.0 client for tests of what ffiboxd serves over HTTP (its metrics): one
// request on a fresh TCP connection, the whole answer read (civetweb's client).
#ifndef FFIBOX_TESTS_SUPPORT_HTTP_GET_H_
#define FFIBOX_TESTS_SUPPORT_HTTP_GET_H_

#include <string>

#include "absl/status/statusor.h"

namespace ffibox {
namespace test_support {

struct HttpAnswer {
  int status = 0;            // 200, 404, ...
  std::string content_type;  // the Content-Type header, or ""
  std::string body;
};

// Sends `method` (GET, HEAD, POST, ...) for `path` to `host`:`port` (an IPv4 address).
// UNAVAILABLE when the connection or the answer fails.
absl::StatusOr<HttpAnswer> HttpRequest(const std::string& host, int port, const std::string& method,
                                       const std::string& path);

}  // namespace test_support
}  // namespace ffibox

#endif  // FFIBOX_TESTS_SUPPORT_HTTP_GET_H_
