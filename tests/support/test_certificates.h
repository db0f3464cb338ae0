// Throwaway TLS material for tests of ffiboxd's TCP listeners: certificate authorities and
// certificates they sign, made by openssl (Debian's openssl package) in a test's directory.
#ifndef FFIBOX_TESTS_SUPPORT_TEST_CERTIFICATES_H_
#define FFIBOX_TESTS_SUPPORT_TEST_CERTIFICATES_H_

#include <string>

#include "absl/status/status.h"

namespace ffibox {
namespace test_support {

// Runs `command` with /bin/sh; returns its exit status (-1 if it did not exit normally) and
// appends what it printed (stdout and stderr) to `output` when given.
int RunShell(const std::string& command, std::string* output = nullptr);

// The contents of the file at `path` ("" if it cannot be read).
std::string ReadFile(const std::string& path);

// Certificates as PEM files in one directory: <name>.pem and its key <name>.key. Keys are
// P-256 and certificates valid for two days.
class TestCertificates {
 public:
  // Certificates go to `directory`, which is created if missing.
  explicit TestCertificates(std::string directory);

  // A self-signed certificate authority `name`. INTERNAL with openssl's output on failure.
  absl::Status MakeAuthority(const std::string& name);

  // A certificate `name` for the common name `common_name`, signed by the authority
  // `issuer`, with openssl's extension lines `extensions` (e.g.
  // "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth"). INTERNAL with openssl's
  // output on failure.
  absl::Status MakeLeaf(const std::string& name, const std::string& common_name,
                        const std::string& issuer, const std::string& extensions);

  // A server certificate `name` for localhost and 127.0.0.1, signed by `issuer`.
  absl::Status MakeLocalhostServer(const std::string& name, const std::string& issuer);

  const std::string& directory() const { return directory_; }
  std::string CertificatePath(const std::string& name) const;
  std::string KeyPath(const std::string& name) const;
  // The PEM contents of certificate `name` and of its key.
  std::string Certificate(const std::string& name) const;
  std::string Key(const std::string& name) const;

 private:
  std::string directory_;
};

}  // namespace test_support
}  // namespace ffibox

#endif  // FFIBOX_TESTS_SUPPORT_TEST_CERTIFICATES_H_
