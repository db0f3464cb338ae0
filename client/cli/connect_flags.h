// The CLI's connection flags (--token, --token_file, --tls, --tls_ca, --tls_cert, --tls_key,
// --tls_server_name) turned into the C++ client's ConnectOptions (client/cpp/client.h).
// ffibox_main.cc defines the flags and fills ConnectFlags from them; docs/cli.md documents
// them.
#ifndef FFIBOX_CLIENT_CLI_CONNECT_FLAGS_H_
#define FFIBOX_CLIENT_CLI_CONNECT_FLAGS_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "client/cpp/client.h"

namespace ffibox {
namespace cli {

// The flags as given; empty strings are flags left out.
struct ConnectFlags {
  std::string token;
  std::string token_file;
  bool tls = false;
  std::string tls_ca;    // file
  std::string tls_cert;  // file
  std::string tls_key;   // file
  std::string tls_server_name;
};

// The most --token_file, --tls_ca, --tls_cert and --tls_key read: a token or a PEM chain is
// a few KiB at most.
inline constexpr size_t kMaxFlagFileBytes = 1 << 20;

// Reads the files the flags name and fills ConnectOptions: TLS is on with --tls or any
// --tls_* flag. INVALID_ARGUMENT naming the flag when a file cannot be read, is empty or
// holds more than kMaxFlagFileBytes,
// when both --token and --token_file are given, when only one of --tls_cert and --tls_key
// is, or when the token is empty or has characters a header value cannot carry.
absl::StatusOr<ConnectOptions> ConnectOptionsFromFlags(const ConnectFlags& flags);

}  // namespace cli
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CLI_CONNECT_FLAGS_H_
