#include "core/default_address.h"

#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace ffibox {

std::string DefaultAddress() {
  const char* env = std::getenv("FFIBOX_ADDRESS");
  if (env != nullptr && env[0] != '\0') return env;
  uid_t uid = geteuid();
  if (uid == 0) return "unix:/run/ffibox/ffiboxd.sock";
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  if (runtime != nullptr && runtime[0] == '/') {
    return absl::StrCat("unix:", runtime, "/ffibox/ffiboxd.sock");
  }
  return absl::StrCat("unix:/tmp/ffibox-", uid, "/ffiboxd.sock");
}

}  // namespace ffibox
