// Invariant checks shared by the fuzz targets in this directory. A failed check prints what
// was expected and aborts, which libFuzzer reports as a finding with the input that caused it.
#ifndef FFIBOX_FUZZ_FUZZ_CHECKS_H_
#define FFIBOX_FUZZ_FUZZ_CHECKS_H_

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace fuzz {

[[noreturn]] inline void Fail(const char* file, int line, const std::string& message) {
  std::fprintf(stderr, "FUZZ CHECK FAILED at %s:%d: %s\n", file, line, message.c_str());
  std::abort();
}

// FUZZ_CHECK(condition, parts...): aborts with absl::StrCat(parts...) unless `condition`.
#define FUZZ_CHECK(condition, ...)                                                                \
  do {                                                                                            \
    if (!(condition)) {                                                                           \
      ::ffibox::fuzz::Fail(__FILE__, __LINE__, absl::StrCat("(" #condition ") ", ##__VA_ARGS__)); \
    }                                                                                             \
  } while (false)

// The promise every ffibox error keeps towards a client: the status is OK, or it maps to one
// of the public codes in `allowed` as a v1::Error that survives the trip to the client
// (serializes and parses back: its strings are valid UTF-8), with a message, and naming the
// offending field when it is INVALID_ARGUMENT and `needs_field`.
inline void CheckTypedError(const absl::Status& status,
                            std::initializer_list<v1::ErrorCode> allowed, const char* what,
                            bool needs_field = true) {
  if (status.ok()) return;
  const v1::Error error = ToProtoError(status);
  bool known = false;
  for (v1::ErrorCode code : allowed) known = known || error.code() == code;
  FUZZ_CHECK(known, what, ": unexpected error code ", v1::ErrorCode_Name(error.code()), " (",
             status.ToString(), ")");
  FUZZ_CHECK(!error.message().empty(), what, ": error without a message");
  v1::Error received;
  FUZZ_CHECK(received.ParseFromString(error.SerializeAsString()), what,
             ": the error does not survive serialization (invalid UTF-8?): ",
             absl::CHexEscape(status.ToString()));
  if (needs_field && error.code() == v1::INVALID_ARGUMENT) {
    FUZZ_CHECK(!error.field().empty(), what,
               ": INVALID_ARGUMENT without a field: ", status.ToString());
  }
}

}  // namespace fuzz
}  // namespace ffibox

#endif  // FFIBOX_FUZZ_FUZZ_CHECKS_H_
