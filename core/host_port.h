#ifndef FFIBOX_CORE_HOST_PORT_H_
#define FFIBOX_CORE_HOST_PORT_H_

// "HOST:PORT" as ffiboxd's TCP listeners are written: split at the last colon, the port a
// decimal number 0 to 65535. What a host may be is the caller's rule (a name, an IPv4
// literal, a bracketed IPv6 literal).

#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"

namespace ffibox {

struct HostPort {
  absl::string_view host;  // as written, brackets of an IPv6 literal kept; never empty
  uint16_t port = 0;
};

// `address` split, or nullopt when it is not a non-empty host, a colon and a port.
std::optional<HostPort> SplitHostPort(absl::string_view address);

}  // namespace ffibox

#endif  // FFIBOX_CORE_HOST_PORT_H_
