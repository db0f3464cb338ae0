// Responses the broker makes itself rather than relays from a worker: an error answering a
// request, and a session event.
#ifndef FFIBOX_SERVER_BROKER_RESPONSES_H_
#define FFIBOX_SERVER_BROKER_RESPONSES_H_

#include <cstdint>

#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// A response to request `id` carrying `error`.
inline v1::Response ErrorResponse(uint64_t id, const v1::Error& error) {
  v1::Response response;
  response.set_id(id);
  *response.mutable_error() = error;
  return response;
}

// An unsolicited session event (id 0) of worker generation `generation`; `error` may be null.
inline v1::Response EventResponse(v1::SessionEvent::Kind kind, uint64_t generation,
                                  const v1::Error* error) {
  v1::Response response;
  response.set_generation(generation);
  response.mutable_event()->set_kind(kind);
  if (error != nullptr) *response.mutable_event()->mutable_error() = *error;
  return response;
}

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_RESPONSES_H_
