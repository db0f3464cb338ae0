// Where ffiboxd listens by default, for the CLI and other users of the C++ client.
//
// The rule lives in `core/default_address.h`, shared with ffiboxd so that a client and a
// server started without flags meet: `$FFIBOX_ADDRESS` if set, else
// `unix:/run/ffibox/ffiboxd.sock` for root, `unix:$XDG_RUNTIME_DIR/ffibox/ffiboxd.sock` or
// `unix:/tmp/ffibox-$UID/ffiboxd.sock` for other users. This header only re-exports it as
// `ffibox::DefaultAddress()` under the client's include path.
#ifndef FFIBOX_CLIENT_CPP_DEFAULT_ADDRESS_H_
#define FFIBOX_CLIENT_CPP_DEFAULT_ADDRESS_H_

#include "core/default_address.h"  // IWYU pragma: export

#endif  // FFIBOX_CLIENT_CPP_DEFAULT_ADDRESS_H_
