// The ffibox C++ client: call functions of native libraries running in an ffibox worker.
//
//   auto client = ffibox::Client::Connect(ffibox::DefaultAddress());
//   auto session = (*client)->OpenSession();
//   auto libm = (*session)->Load("libm.so.6");
//   auto cos = libm->Function<double(double)>("cos");
//   absl::StatusOr<double> y = (*cos)(0.5);   // WORKER_CRASHED, CALL_TIMEOUT, ... on failure
//
// C++ types in a signature and what they become:
//   bool char signed/unsigned char short int long long long (and unsigned), float, double,
//   long double (sent and returned as a double), wchar_t, and the <cstdint> aliases; an enum
//   as its underlying type (any value of it)
//                            -> the C scalar, by value
//   T* / T& (T a scalar)     -> client memory: sizeof(T) bytes copied in, and back after the
//                               call (const T*: in only); nullptr is NULL
//   ffibox::Buffer& / Buffer* -> client bytes in the buffer's direction (IN/OUT/INOUT)
//   const char*, char*, std::string, absl::string_view  -> char* string (CSTRING)
//   const wchar_t*, std::wstring, std::u32string -> wchar_t* string (WSTRING)
//   void*, ffibox::RemotePtr, std::nullptr_t -> a worker address (parameters take RemotePtr)
//   ffibox::RemotePtr* / RemotePtr& -> an out-pointer the library fills with a worker address
//   a record described with FFIBOX_STRUCT / FFIBOX_UNION / FFIBOX_PACKED_STRUCT (records.h)
//                            -> by value, as raw bytes (layout checked once per session)
//   Record* / Record& / std::array<T, N>* / &  -> one object as an INOUT block (const: IN);
//                               `const std::array<int, 5>&` is C's `const int a[5]`
//   std::vector<T>& / absl::Span<T>  -> the elements as one INOUT block (const T: IN); T a
//                               scalar, record or std::array (multi-dimensional arrays)
//   const std::vector<std::string>&  -> char** (NULL-terminated array of C strings)
//   ffibox::GraphPointer     -> a position in a BlockGraph: linked client blocks, pointer
//                               changes read back (block_graph.h)
//   ffibox::Callback<Sig>    -> a function pointer to a client callback (callback.h), from
//                               Session::DefineCallback<Sig>(handler)
//   ...                      -> a variadic function, `Function<int(const char*, ...)>`: the
//                               arguments past the fixed ones as their C++ types promote
//                               (typed_function.h)
// Results: scalars; described records (raw); void -> absl::Status; void* / RemotePtr ->
//   RemotePtr (a returned function pointer too: call it with Session::FunctionAt<Sig>);
//   std::string / std::wstring / std::u32string -> the returned char* / wchar_t* string, with
//   NULL an error (FAILED_PRECONDITION); std::optional<...> of those -> NULL is nullopt.
// A char* result is read by the worker and not freed (as in ctypes); to free it, declare the
// result as void*, read it with Session::ReadCString, then call the library's free function.
//
// Many small calls go in one request with a Batch (batch.h): `session->NewBatch()`, `Add` typed
// calls, `Run`, then `Result` per call.
//
// Errors are absl::Status values carrying the public ffibox.v1.Error: `ErrorOf(status)`
// returns it (code, signal, exit_code, function, never_reached_worker, ...).
#ifndef FFIBOX_CLIENT_CPP_FFIBOX_CLIENT_H_
#define FFIBOX_CLIENT_CPP_FFIBOX_CLIENT_H_

#include "client/cpp/batch.h"            // IWYU pragma: export
#include "client/cpp/block_graph.h"      // IWYU pragma: export
#include "client/cpp/callback.h"         // IWYU pragma: export
#include "client/cpp/client.h"           // IWYU pragma: export
#include "client/cpp/default_address.h"  // IWYU pragma: export
#include "client/cpp/library.h"          // IWYU pragma: export
#include "client/cpp/raw_function.h"     // IWYU pragma: export
#include "client/cpp/records.h"          // IWYU pragma: export
#include "client/cpp/session.h"          // IWYU pragma: export
#include "client/cpp/typed_function.h"   // IWYU pragma: export
#include "client/cpp/values.h"           // IWYU pragma: export

#endif  // FFIBOX_CLIENT_CPP_FFIBOX_CLIENT_H_
