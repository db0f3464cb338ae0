// A program built against the C++ client: cos(x) computed in a jailed worker.
//
//   bazel build //client/cpp/example:cos
//   bazel-bin/client/cpp/example/cos 0.5                          # ffiboxd's default address
//   bazel-bin/client/cpp/example/cos 0.5 unix:/path/to/ffiboxd.sock
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "client/cpp/ffibox_client.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s X [ADDRESS]\n", argv[0]);
    return 2;
  }
  const double x = std::strtod(argv[1], nullptr);
  const std::string address = argc == 3 ? argv[2] : ffibox::DefaultAddress();
  absl::StatusOr<std::unique_ptr<ffibox::Client>> client = ffibox::Client::Connect(address);
  if (!client.ok()) {
    std::fprintf(stderr, "connect: %s\n", client.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<ffibox::Session>> session = (*client)->OpenSession();
  if (!session.ok()) {
    std::fprintf(stderr, "session: %s\n", session.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<ffibox::Library> libm = (*session)->Load("libm.so.6");
  if (!libm.ok()) {
    std::fprintf(stderr, "load: %s\n", libm.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<ffibox::TypedFunction<double(double)>> cos = libm->Function<double(double)>("cos");
  if (!cos.ok()) {
    std::fprintf(stderr, "resolve: %s\n", cos.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<double> y = (*cos)(x);
  if (!y.ok()) {
    std::fprintf(stderr, "call: %s\n", y.status().ToString().c_str());
    return 1;
  }
  std::printf("%.17g\n", *y);
  return 0;
}
