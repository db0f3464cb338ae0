// A program built against the C++ client: cos(x) computed in a jailed worker.
//
//   bazel build //client/cpp/example:cos
//   bazel-bin/client/cpp/example/cos 0.5                          # ffiboxd's default address
//   bazel-bin/client/cpp/example/cos 0.5 unix:/path/to/ffiboxd.sock
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "client/cpp/ffibox_client.h"

namespace {

// Prints what failed as its typed error ("load: LIBRARY_NOT_ALLOWED: ...") and returns 1.
int Fail(const char* what, const absl::Status& status) {
  const ffibox::v1::Error error = ffibox::ErrorOf(status);
  std::fprintf(stderr, "%s: %s: %s\n", what, ffibox::v1::ErrorCode_Name(error.code()).c_str(),
               error.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  char* end = nullptr;
  errno = 0;
  const double x = argc >= 2 ? std::strtod(argv[1], &end) : 0;
  if (argc < 2 || argc > 3 || end == argv[1] || *end != '\0' || errno == ERANGE) {
    std::fprintf(stderr, "usage: %s X [ADDRESS]   (X a number)\n", argv[0]);
    return 2;
  }
  const std::string address = argc == 3 ? argv[2] : ffibox::DefaultAddress();
  absl::StatusOr<std::unique_ptr<ffibox::Client>> client = ffibox::Client::Connect(address);
  if (!client.ok()) return Fail("connect", client.status());
  absl::StatusOr<std::unique_ptr<ffibox::Session>> session = (*client)->OpenSession();
  if (!session.ok()) return Fail("session", session.status());
  absl::StatusOr<ffibox::Library> libm = (*session)->Load("libm.so.6");
  if (!libm.ok()) return Fail("load", libm.status());
  absl::StatusOr<ffibox::TypedFunction<double(double)>> cos = libm->Function<double(double)>("cos");
  if (!cos.ok()) return Fail("resolve", cos.status());
  absl::StatusOr<double> y = (*cos)(x);
  if (!y.ok()) return Fail("call", y.status());
  std::printf("%.17g\n", *y);
  return 0;
}
