// A worker's settings on its command line: the broker puts the WorkerSettings message
// (server/protocol/worker_protocol.proto) in one argument, the worker reads it back.
// Encoding: --settings=<base64 of the serialized message>.
#ifndef FFIBOX_SERVER_PROTOCOL_WORKER_SETTINGS_H_
#define FFIBOX_SERVER_PROTOCOL_WORKER_SETTINGS_H_

#include <string>

#include "absl/status/statusor.h"
#include "server/protocol/worker_protocol.pb.h"

namespace ffibox {

// The argument that carries `settings`.
std::string WorkerSettingsArgument(const internal::WorkerSettings& settings);

// The settings among the worker's arguments. INVALID_ARGUMENT when there is no --settings
// argument, it does not decode, it carries fields this worker does not know (a newer broker
// asking for a restriction this worker cannot apply), its generation is 0, or it has a jail
// without a seccomp policy: the worker must then refuse to serve.
absl::StatusOr<internal::WorkerSettings> ParseWorkerSettings(int argc, char** argv);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_PROTOCOL_WORKER_SETTINGS_H_
