// One ffibox session as seen by a C++ caller: one Session stream, one (restartable) worker.
//
// Created by `Client::OpenSession`. Load libraries with `Load`, then call their functions
// (`library.h`, `typed_function.h`); read and write worker memory, raw or typed (`Read<T>`,
// `Write<T>`); call function pointers the library returned (`FunctionAt<Sig>`); `Send` is the
// escape hatch for any protocol request.
// Thread-safe: several threads may issue requests at once and they are pipelined on the
// stream (the worker still runs them one at a time, in arrival order). Closing the session
// (explicitly or by destruction) ends the stream, and the server kills the worker.
#ifndef FFIBOX_CLIENT_CPP_SESSION_H_
#define FFIBOX_CLIENT_CPP_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/cpp/batch.h"
#include "client/cpp/callback.h"
#include "client/cpp/internal/memory_ops.h"
#include "client/cpp/internal/session_stream.h"
#include "client/cpp/library.h"
#include "client/cpp/raw_function.h"
#include "client/cpp/records.h"
#include "client/cpp/typed_function.h"
#include "client/cpp/values.h"
#include "ffibox/v1/ffibox.pb.h"
#include "grpcpp/grpcpp.h"

namespace ffibox {

// Receives what a session's library prints: the stream it wrote to and the bytes.
using OutputHandler = client_internal::SessionStream::OutputHandler;

// The jail layers a server may report in SessionOpened.jail_layers (docs/protocol.md).
inline constexpr absl::string_view kJailLayerNames[] = {
    "user",       "pid",  "net",    "ipc",     "uts",          "mount",
    "filesystem", "proc", "cgroup", "seccomp", "no_new_privs", "rlimits"};

// The layers `names` requires, "all" standing for every one of kJailLayerNames;
// INVALID_ARGUMENT naming `what` (where the names came from) for a name that is no layer (a
// misspelt one would otherwise read as a layer the server lacks).
absl::StatusOr<std::vector<std::string>> ExpandJailLayers(absl::Span<const std::string> names,
                                                          absl::string_view what);

struct SessionOptions {
  // Default deadline of each call; zero uses the server's default.
  absl::Duration call_timeout = absl::ZeroDuration();
  // How much longer than its deadline in the worker (the call's, else `call_timeout`) the
  // answer to a request may take to arrive; positive and finite. When the server sends
  // nothing for that long while requests wait (counted from its last message, so requests
  // queued behind slow ones get their whole bound), it is taken for gone: the session ends
  // and every request waiting fails with DEADLINE_EXCEEDED (which ErrorOf reads as
  // CALL_TIMEOUT; the message says the session is closed), instead of waiting forever for a
  // server that is stopped or wedged (gRPC keepalive, ConnectOptions, catches a connection
  // that went away). docs/protocol.md, "Answer deadlines".
  absl::Duration answer_margin = client_internal::kDefaultAnswerMargin;
  // Whether a lost worker is replaced (RESTART) or ends the session's use (NO_RESTART).
  bool restart = true;
  // The session's memory cap in bytes (its worker's address space); 0 uses the server's.
  uint64_t memory_limit_bytes = 0;
  // Jail layers the session's workers must have (kJailLayerNames, or "all" for every one);
  // Open fails with JAIL_UNAVAILABLE naming the missing ones otherwise, and with
  // INVALID_ARGUMENT, before asking the server, for a name that is no layer.
  std::vector<std::string> required_jail_layers;
  // Environment variables for the session's workers, set before any library loads; the
  // server accepts only names its jail.env_allow lists (INVALID_ARGUMENT otherwise).
  std::map<std::string, std::string> environment;
  // Ask for a writable directory shared with the library (same path for both, removed with
  // the session); info().scratch_directory() names it. FAILED_PRECONDITION when the server
  // has no scratch root.
  bool scratch_directory = false;
  // The CPU share (1..100 % of one CPU) the worker keeps while no request is in flight, for
  // libraries that run background threads; 0 = the server's (limits.idle_cpu_percent).
  uint32_t idle_cpu_percent = 0;
  // Receives what the library prints (WORKER_OUTPUT events), on the stream's reader thread;
  // it must not block nor use the session. Unset: the bytes go to this process's stderr.
  OutputHandler on_output;
  // Calls, and memory reads and writes and layouts, go to the worker over a same-host
  // shared-memory channel instead of gRPC (on a unix-socket address only; docs/protocol.md,
  // "The same-host channel"), while no request sent through gRPC (SendAsync, a load, an
  // allocation, from any thread of the session) awaits its answer, so that none overtakes
  // one sent before it; the rest of the session stays on gRPC. Open fails with the reason
  // when the channel cannot be set up.
  // After a worker is lost, the next call goes through gRPC (which starts the next worker),
  // and the calls after it over a channel to that worker. Callbacks that native code calls
  // during a call on the channel come on it too, and run on the calling thread (callback.h
  // says what their handlers may send), so a handler must not take a lock its caller holds
  // around the call (it would wait for itself).
  bool same_host = false;
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

  // Loads the library at `path` (absolute, a soname such as "libm.so.6", or relative to this
  // process's working directory: "./libx.so" goes made absolute) into the worker;
  // LIBRARY_NOT_ALLOWED or LIBRARY_LOAD_FAILED when the server refuses or dlopen fails,
  // INVALID_ARGUMENT for a path that is not UTF-8. With `global_symbols`, dlopen's
  // RTLD_GLOBAL: the library's symbols also serve the libraries loaded after it in this
  // session (a GL implementation for the GLU loaded next); RTLD_LOCAL otherwise.
  absl::StatusOr<Library> Load(const std::string& path, bool global_symbols = false);
  // Load without waiting for the answer: the library's functions can be resolved and called
  // at once (Library::FunctionAsync), and their requests go behind the load, so a session's
  // start waits once instead of three times. The load's failure is returned by Library::Wait
  // and by every request that uses the library.
  Library LoadAsync(const std::string& path, bool global_symbols = false);

  // Sends this session's calls (and memory and layout requests) over a same-host channel to
  // its current worker from now on
  // (SessionOptions::same_host); starts the worker if there is none. FAILED_PRECONDITION off a
  // unix-socket address, the door's error when the channel cannot be fetched.
  absl::Status EnableSameHost();
  // Whether calls go over the same-host channel now (false from a worker's loss until the
  // next worker answered a call).
  bool same_host() const;
  // How many calls on the same-host channel went as scalar calls, their answer read from its
  // bytes (TypedFunction calls whose arguments and result are all scalars, without errno:
  // docs/architecture.md, "The same-host channel").
  uint64_t same_host_scalar_calls() const;
  // How many callback invocations on the same-host channel ran as scalar invocations: a
  // callback whose parameters and result are scalars, its invoke and its answer (unless the
  // handler failed) in protobuf's wire format without the messages (core/scalar_wire.h).
  uint64_t same_host_scalar_invocations() const;
  // How many calls on the same-host channel its worker says it ran from their arguments'
  // bits, without parsing the request (docs/architecture.md), as of the channel's last
  // exchange (the count starts again with each worker's channel): a count the worker keeps
  // in the channel, so a statistic to look at, never to act on; 0 before any.
  uint64_t same_host_worker_scalar_calls() const;

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
  // Reads the NUL-terminated wchar_t string at `address` (ctypes' wstring_at).
  absl::StatusOr<std::u32string> ReadWString(RemotePtr address);
  // Sets `size` bytes at `address` to `byte` (memset); MEMORY_FAULT if not writable.
  absl::Status FillMemory(RemotePtr address, uint8_t byte, size_t size);
  // Copies `size` bytes from `source` to `destination` (memmove; ranges may overlap).
  absl::Status CopyMemory(RemotePtr destination, RemotePtr source, size_t size);

  // Dereferences the worker's `T*` at `address`: T is a scalar, a described record
  // (records.h), an array of those, or RemotePtr (a pointer stored there). MEMORY_FAULT for
  // a bad address, STALE_HANDLE for one of an earlier worker, FAILED_PRECONDITION if a
  // record's layout differs from the worker's.
  template <typename T>
  absl::StatusOr<T> Read(RemotePtr address) {
    return memory_->Read<T>(client_internal::ToRemoteAddress(address));
  }

  // Stores `value` through the worker's `T*` at `address` (T as for Read); MEMORY_FAULT if
  // the address is not writable.
  template <typename T>
  absl::Status Write(RemotePtr address, const T& value) {
    return memory_->Write<T>(client_internal::ToRemoteAddress(address), value);
  }

  // A callable for the function pointer `address` returned by the library (e.g. a `binop`),
  // with C++ signature Sig. The handle is bound to the address's worker generation: after a
  // restart calls fail with STALE_HANDLE. INVALID_ARGUMENT for NULL.
  template <typename Sig>
  absl::StatusOr<TypedFunction<Sig>> FunctionAt(RemotePtr address) {
    if (absl::Status checked = TypedFunction<Sig>::VerifyLayouts(*memory_); !checked.ok()) {
      return checked;
    }
    absl::StatusOr<RawFunction> raw = ResolveAt(address, TypedFunction<Sig>::Signature());
    if (!raw.ok()) return raw.status();
    return TypedFunction<Sig>(*std::move(raw));
  }

  // Defines a callback with C++ signature Sig whose invocations run `handler` on the thread
  // that made the call, or on the session's callback thread for a library thread's (see
  // callback.h for the threads and the argument types it receives), e.g.
  //   DefineCallback<int(const int*, const int*)>(
  //       [](Pointee<const int> a, Pointee<const int> b) -> absl::StatusOr<int> {
  //         return *a - *b; });
  // RESOURCE_EXHAUSTED beyond the server's --max_callbacks.
  template <typename Sig>
  absl::StatusOr<Callback<Sig>> DefineCallback(typename Callback<Sig>::Handler handler) {
    return Callback<Sig>::Define(stream_, memory_, std::move(handler));
  }

  // An empty batch of this session's calls (batch.h): typed calls added to it go to the
  // worker in one request.
  Batch NewBatch() { return Batch(stream_, memory_); }

  // Like FunctionAt with a signature built at run time.
  absl::StatusOr<RawFunction> ResolveAt(RemotePtr address, const v1::Signature& signature);

  // The worker's layout of `type`: size, alignment, and the offset (and bit offset) of every
  // field; INVALID_ARGUMENT naming the bad part of a malformed type.
  absl::StatusOr<v1::LayoutResult> Layout(const v1::Type& type);

  // The server's answer to OpenSession: session id, effective deadline, message cap, the
  // jail layers every worker of the session gets (jail_layers) and those the operator
  // waived (waived_jail_layers).
  const v1::SessionOpened& info() const { return info_; }
  // The last worker generation seen (1 = first worker; higher after restarts).
  uint64_t generation() const;
  // Returns and forgets the unsolicited session events received so far, oldest first: the
  // last 1000 of them (a library can have its worker send events without end).
  std::vector<v1::SessionEvent> TakeEvents();

  // Sends CloseSession, ends the stream and waits (bounded) for the server to end it; later
  // requests fail with FAILED_PRECONDITION. Idempotent.
  absl::Status Close();

 private:
  Session(std::shared_ptr<client_internal::SessionStream> stream, v1::SessionOpened info);

  std::shared_ptr<client_internal::SessionStream> stream_;
  std::shared_ptr<client_internal::MemoryOps> memory_;
  v1::SessionOpened info_;
};

}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_SESSION_H_
