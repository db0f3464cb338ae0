// The address ffiboxd listens on and clients connect to when none is given.
#ifndef FFIBOX_CORE_DEFAULT_ADDRESS_H_
#define FFIBOX_CORE_DEFAULT_ADDRESS_H_

#include <string>

namespace ffibox {

// `$FFIBOX_ADDRESS` if set; otherwise an owner-only unix socket: unix:/run/ffibox/ffiboxd.sock
// for root, unix:$XDG_RUNTIME_DIR/ffibox/ffiboxd.sock or unix:/tmp/ffibox-$UID/ffiboxd.sock
// for other users.
std::string DefaultAddress();

}  // namespace ffibox

#endif  // FFIBOX_CORE_DEFAULT_ADDRESS_H_
