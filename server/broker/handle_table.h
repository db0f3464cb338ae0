// The handles a session's client holds: its libraries, functions and callbacks, what the
// worker answered for each, what a new worker must be sent to honour them again after
// a restart (handles stay the same across workers; addresses do not), and which client
// request made each library and function (requests may name them by that request's id).
//
// Pure data: no processes, no I/O, no lock of its own. The session holds it under its lock.
#ifndef FFIBOX_SERVER_BROKER_HANDLE_TABLE_H_
#define FFIBOX_SERVER_BROKER_HANDLE_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

class HandleTable {
 public:
  struct Limits {
    size_t max_libraries = 256;
    size_t max_functions = 65536;
    size_t max_callbacks = 4096;  // defined and not freed, at once
    // Bytes of the broker's memory the function signatures (with their symbols) and
    // callback definitions kept at once take, parsed: what a session holds until it ends,
    // whatever its requests carry (a signature may be megabytes of record names, or of
    // fields of a few bytes each on the wire and a hundred parsed).
    uint64_t max_kept_bytes = uint64_t{16} << 20;
  };

  struct Function {
    uint64_t library = 0;  // 0 for a function resolved by address
    std::string symbol;    // or "function at 0x..." for one resolved by address
    v1::Signature signature;
    // Non-zero for a function resolved by address: the only worker generation it is valid
    // in (it is never replayed).
    uint64_t generation = 0;
  };

  // A request that gives a new worker one handle again.
  struct Replay {
    v1::Request request;
    v1::Request::OpCase op = v1::Request::OP_NOT_SET;
    uint64_t handle = 0;
    std::string label;  // "dlopen /lib/libm.so.6 (replay)"
  };

  explicit HandleTable(Limits limits) : limits_(limits) {}

  // A new library handle (1, 2, ...) for `path`, loaded with RTLD_GLOBAL when `global`
  // (LoadLibrary.global, replayed so), pending until RecordOutcome. RESOURCE_EXHAUSTED past
  // the limit.
  absl::StatusOr<uint64_t> AddLibrary(std::string path, bool global = false);
  // OK when `handle` names a library that has not failed; NOT_FOUND naming `field`
  // ("resolve_function.library") otherwise.
  absl::Status CheckLibrary(uint64_t handle, absl::string_view field) const;

  // A new function handle for `function`, pending until RecordOutcome. RESOURCE_EXHAUSTED
  // past the limits (of functions, of kept bytes).
  absl::StatusOr<uint64_t> AddFunction(Function function);

  // Request-id references (pipelining): the client's request `request_id` made library or
  // function `handle` (AddLibrary's or AddFunction's). A later accepted request of the same
  // id replaces it (one the broker refused does not). At most one entry per handle, so the limits
  // above bound them too.
  void NoteLoadRequest(uint64_t request_id, uint64_t handle);
  void NoteResolveRequest(uint64_t request_id, uint64_t handle);
  // The library handle the load request `request_id` made, pending or loaded; NOT_FOUND
  // naming `field` ("resolve_function.library_request") when no load request of that id
  // was accepted or its load failed.
  absl::StatusOr<uint64_t> LibraryOfRequest(uint64_t request_id, absl::string_view field) const;
  // The function handle the resolve request `request_id` made, pending or resolved;
  // NOT_FOUND naming `field` as above.
  absl::StatusOr<uint64_t> FunctionOfRequest(uint64_t request_id, absl::string_view field) const;
  // The function `handle` names, if it has not failed (valid until the table changes);
  // NOT_FOUND naming call.function otherwise.
  absl::StatusOr<const Function*> FindFunction(uint64_t handle) const;

  // A new callback id for `definition` (its signature and buffer_bytes), pending until
  // RecordOutcome. RESOURCE_EXHAUSTED past the limits (of callbacks defined at once, of kept
  // bytes).
  absl::StatusOr<uint64_t> AddCallback(const v1::DefineCallback& definition);
  // The definition of callback `id`, defined and not yet gone (the worker may invoke a
  // callback whose definition or free it has not answered yet); null when there is none.
  std::shared_ptr<const v1::DefineCallback> CallbackDefinition(uint64_t id) const;
  // Marks callback `id` as being freed (it goes when the worker answers). NOT_FOUND when
  // there is no such callback, or it is already being freed.
  absl::Status MarkCallbackFreed(uint64_t id);
  // Removes callback `id` at once (no worker holds it).
  void ForgetCallback(uint64_t id) { EraseCallback(id); }

  // Applies the worker's answer to a load, resolve, define or free of `handle` (or the loss
  // of the worker, as a failure). A failed definition leaves no callback id behind; a free
  // removes the callback whatever the answer.
  void RecordOutcome(v1::Request::OpCase op, uint64_t handle, bool succeeded);
  // A library or function `handle` that a new worker was sent again (Replays) could not be
  // given it: `why` says so (the replay's label and error), and requests naming it from now
  // on say it too. Call after RecordOutcome of that failure.
  void RecordLost(v1::Request::OpCase op, uint64_t handle, std::string why);

  // What a new worker must be sent, in this order: every ready library, every ready
  // function resolved by name, every ready callback not being freed.
  std::vector<Replay> Replays() const;

  size_t library_count() const { return libraries_.size(); }
  size_t function_count() const { return functions_.size(); }
  size_t callback_count() const { return callbacks_.size(); }
  // Bytes of the broker's memory the signatures and definitions kept take, parsed
  // (Limits::max_kept_bytes).
  uint64_t kept_bytes() const { return kept_bytes_; }

 private:
  enum class State { kPending, kReady, kFailed };
  struct Library {
    std::string path;
    State state = State::kPending;
    std::string lost;  // RecordLost's, once its replay failed
    bool global = false;
  };
  struct FunctionEntry {
    Function function;
    State state = State::kPending;
    uint64_t bytes = 0;  // counted in kept_bytes_ (0 once it failed: its signature is gone)
    std::string lost;    // RecordLost's, once its replay failed
  };
  struct Callback {
    std::shared_ptr<const v1::DefineCallback> definition;
    State state = State::kPending;
    bool freed = false;  // a free was sent; gone once the worker answers it
    uint64_t bytes = 0;  // counted in kept_bytes_
  };

  // OK when `bytes` more fit in Limits::max_kept_bytes (then counted), else
  // RESOURCE_EXHAUSTED saying what `what` would keep.
  absl::Status Keep(uint64_t bytes, absl::string_view what);
  void EraseCallback(uint64_t id);
  // " (it was lost with its worker: ...)" for a library whose replay failed, else "".
  std::string LostNote(uint64_t library) const;

  const Limits limits_;
  std::vector<Library> libraries_;  // handle = index + 1
  absl::flat_hash_map<uint64_t, FunctionEntry> functions_;
  uint64_t next_function_handle_ = 1;
  absl::flat_hash_map<uint64_t, Callback> callbacks_;
  uint64_t next_callback_handle_ = 1;
  uint64_t kept_bytes_ = 0;
  // Client request id -> the handle that request made.
  absl::flat_hash_map<uint64_t, uint64_t> load_requests_;
  absl::flat_hash_map<uint64_t, uint64_t> resolve_requests_;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_HANDLE_TABLE_H_
