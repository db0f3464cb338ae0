// The one rule for worker generations in answers: every worker address a client holds names
// the worker generation it belongs to, so that the server refuses it after a restart
// (STALE_HANDLE). The server stamps the addresses it returns; an address that still comes
// without a generation (0) gets the generation of the response that carried it. The session
// stream applies this once to every response it receives, before anyone reads the response.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_GENERATION_STAMP_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_GENERATION_STAMP_H_

#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

// Sets response->generation() in every RemoteAddress of the response's result (function and
// symbol addresses, allocations, callbacks, kept blocks, remote pointers in values, however
// deeply nested in aggregates, and in callback arguments) whose generation is 0. Leaves the
// response as it is when its own generation is 0.
void StampGeneration(v1::Response* response);

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_GENERATION_STAMP_H_
