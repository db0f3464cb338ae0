#include "tests/support/test_certificates.h"

#include <stdio.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ffibox {
namespace test_support {
namespace {

constexpr char kNewKey[] = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

absl::Status RunOpenssl(const std::string& command) {
  std::string output;
  if (RunShell(command, &output) != 0) {
    return absl::InternalError(absl::StrCat("openssl failed: ", command, "\n", output));
  }
  return absl::OkStatus();
}

}  // namespace

int RunShell(const std::string& command, std::string* output) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    if (output != nullptr) output->append(buffer, n);
  }
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

TestCertificates::TestCertificates(std::string directory) : directory_(std::move(directory)) {
  std::filesystem::create_directories(directory_);
}

absl::Status TestCertificates::MakeAuthority(const std::string& name) {
  return RunOpenssl(absl::StrCat("cd ", directory_, " && openssl req -x509 ", kNewKey, " -keyout ",
                                 name, ".key -out ", name, ".pem -days 2 -subj /CN=", name));
}

absl::Status TestCertificates::MakeLeaf(const std::string& name, const std::string& common_name,
                                        const std::string& issuer, const std::string& extensions) {
  std::ofstream(absl::StrCat(directory_, "/", name, ".ext")) << extensions << "\n";
  return RunOpenssl(absl::StrCat("cd ", directory_, " && openssl req ", kNewKey, " -keyout ", name,
                                 ".key -out ", name, ".csr -subj /CN=", common_name,
                                 " && openssl x509 -req -in ", name, ".csr -CA ", issuer,
                                 ".pem -CAkey ", issuer, ".key -CAcreateserial -days 2 -out ", name,
                                 ".pem -extfile ", name, ".ext"));
}

absl::Status TestCertificates::MakeLocalhostServer(const std::string& name,
                                                   const std::string& issuer) {
  return MakeLeaf(name, "localhost", issuer,
                  "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth");
}

std::string TestCertificates::CertificatePath(const std::string& name) const {
  return absl::StrCat(directory_, "/", name, ".pem");
}

std::string TestCertificates::KeyPath(const std::string& name) const {
  return absl::StrCat(directory_, "/", name, ".key");
}

std::string TestCertificates::Certificate(const std::string& name) const {
  return ReadFile(CertificatePath(name));
}

std::string TestCertificates::Key(const std::string& name) const { return ReadFile(KeyPath(name)); }

}  // namespace test_support
}  // namespace ffibox
