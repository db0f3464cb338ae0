// One ffibox session as seen by a C++ caller: one Session stream, one (restartable) worker.
//
// Created by `Client::OpenSession`. Load libraries with `Load`, then call their functions
// (`library.h`, `typed_function.h`); `Send` is the escape hatch for any protocol request.
// Thread-safe: several threads may issue requests at once and they are pipelined on the
// stream (the worker still runs them one at a time, in arrival order). Closing the session
// (explicitly or by destruction) ends the stream, and the server kills the worker.
#ifndef FFIBOX_CLIENT_CPP_SESSION_H_
#define FFIBOX_CLIENT_CPP_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/cpp/library.h"
#include "client/cpp/session_stream.h"
#include "client/cpp/values.h"
#include "ffibox/v1/ffibox.pb.h"
#include "grpcpp/grpcpp.h"

namespace ffibox {

struct SessionOptions {
  // Default deadline of each call; zero uses the server's default.
  absl::Duration call_timeout = absl::ZeroDuration();
  // Whether a lost worker is replaced (RESTART) or ends the session's use (NO_RESTART).
  bool restart = true;
};

class Session {
 public:
  // Opens a session on `channel` with `options` (sends OpenSession and waits for the answer);
  // returns UNAVAILABLE if the server cannot be reached. Client::OpenSession calls this.
  static absl::StatusOr<std::unique_ptr<Session>> Open(std::shared_ptr<grpc::Channel> channel,
                                                       const SessionOptions& options);

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  // Closes the session, ignoring errors.
  ~Session();

  // Loads the library at `path` (absolute, or a soname such as "libm.so.6") into the worker;
  // LIBRARY_NOT_ALLOWED or LIBRARY_LOAD_FAILED when the server refuses or dlopen fails.
  absl::StatusOr<Library> Load(const std::string& path);

  // Sends any request (its id is assigned here) and waits for the matching response; a
  // response carrying an error is returned as that typed error (ErrorStatus).
  absl::StatusOr<v1::Response> Send(v1::Request request);

  // Sends any request without waiting; the future holds the raw response (even one that
  // carries an error), or UNAVAILABLE if the stream broke first.
  std::future<absl::StatusOr<v1::Response>> SendAsync(v1::Request request);

  // Reads `size` bytes at `address`; MEMORY_FAULT if they are not readable.
  absl::StatusOr<std::string> ReadMemory(RemotePtr address, size_t size);
  // Writes `data` at `address`; MEMORY_FAULT if it is not writable.
  absl::Status WriteMemory(RemotePtr address, absl::string_view data);
  // Allocates `size` bytes in the worker (aligned to 16); free them with FreeMemory.
  absl::StatusOr<RemotePtr> AllocMemory(size_t size);
  // Frees memory from AllocMemory.
  absl::Status FreeMemory(RemotePtr address);
  // Reads the NUL-terminated char string at `address`.
  absl::StatusOr<std::string> ReadCString(RemotePtr address);

  // The server's answer to OpenSession: session id, effective deadline, message cap.
  const v1::SessionOpened& info() const { return info_; }
  // The last worker generation seen (1 = first worker; higher after restarts).
  uint64_t generation() const;
  // Returns and forgets the unsolicited session events received so far, oldest first.
  std::vector<v1::SessionEvent> TakeEvents();

  // Sends CloseSession, ends the stream and waits (bounded) for the server to end it; later
  // requests fail with FAILED_PRECONDITION. Idempotent.
  absl::Status Close();

 private:
  Session(std::shared_ptr<client_internal::SessionStream> stream, v1::SessionOpened info);

  std::shared_ptr<client_internal::SessionStream> stream_;
  v1::SessionOpened info_;
};

}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_SESSION_H_
