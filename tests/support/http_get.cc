#include "tests/support/http_get.h"

#include "absl/strings/str_cat.h"
#include "civetweb.h"

namespace ffibox {
namespace test_support {

absl::StatusOr<HttpAnswer> HttpRequest(const std::string& host, int port, const std::string& method,
                                       const std::string& path) {
  mg_init_library(0);
  char error[256] = "";
  struct mg_connection* connection =
      mg_download(host.c_str(), port, /*use_ssl=*/0, error, sizeof(error),
                  "%s %s HTTP/1.0\r\nHost: %s\r\n\r\n", method.c_str(), path.c_str(), host.c_str());
  if (connection == nullptr) {
    mg_exit_library();
    return absl::UnavailableError(
        absl::StrCat(method, " http://", host, ":", port, path, ": ", error));
  }
  HttpAnswer answer;
  const struct mg_response_info* info = mg_get_response_info(connection);
  if (info != nullptr) answer.status = info->status_code;
  const char* content_type = mg_get_header(connection, "Content-Type");
  if (content_type != nullptr) answer.content_type = content_type;
  char buffer[16384];
  for (;;) {
    const int got = mg_read(connection, buffer, sizeof(buffer));
    if (got <= 0) break;
    answer.body.append(buffer, static_cast<size_t>(got));
  }
  mg_close_connection(connection);
  mg_exit_library();
  return answer;
}

}  // namespace test_support
}  // namespace ffibox
