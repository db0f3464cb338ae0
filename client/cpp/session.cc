#include "client/cpp/session.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cpp/internal/result_traits.h"
#include "client/cpp/internal/value_codec.h"
#include "client/cpp/raw_function.h"
#include "core/errors.h"
#include "core/status_macros.h"
#include "core/utf8.h"

namespace ffibox {

using client_internal::ToRemoteAddress;

namespace {

absl::Status ExpectDone(const absl::StatusOr<v1::Response>& response, const char* operation) {
  if (!response.ok()) return response.status();
  if (!response->has_done()) {
    return ErrorStatus(v1::INTERNAL, absl::StrCat("the server answered ", operation,
                                                  " with something other than done"));
  }
  return absl::OkStatus();
}

// The path a load sends for `path`: a relative path holding a slash (`./libx.so`) names a
// file in this process's directory, as dlopen would take it, so it goes made absolute (the
// server refuses relative paths: its own directory would load another library); a bare
// soname goes as it is. INVALID_ARGUMENT for text that is not UTF-8, which would end the
// session's stream.
absl::StatusOr<std::string> PathToLoad(const std::string& path) {
  FFIBOX_RETURN_IF_ERROR(CheckUtf8("load_library.path", path));
  if (path.empty() || path.front() == '/' || path.find('/') == std::string::npos) return path;
  char directory[PATH_MAX];
  if (getcwd(directory, sizeof(directory)) == nullptr) {
    return ErrorStatus(v1::INVALID_ARGUMENT,
                       absl::StrCat("cannot make ", path, " absolute: the working directory is ",
                                    "unknown (", strerror(errno), ")"));
  }
  return absl::StrCat(directory, "/", path);
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ExpandJailLayers(absl::Span<const std::string> names,
                                                          absl::string_view what) {
  std::vector<std::string> layers;
  for (const std::string& name : names) {
    if (name == "all") {
      for (absl::string_view layer : kJailLayerNames) layers.emplace_back(layer);
    } else if (std::find(std::begin(kJailLayerNames), std::end(kJailLayerNames), name) !=
               std::end(kJailLayerNames)) {
      layers.push_back(name);
    } else {
      return ErrorStatus(v1::INVALID_ARGUMENT,
                         absl::StrCat(what, ": no jail layer is called '", name, "' (the layers: ",
                                      absl::StrJoin(kJailLayerNames, ", "), ", or all)"));
    }
  }
  return layers;
}

Session::Session(std::shared_ptr<client_internal::SessionStream> stream, v1::SessionOpened info)
    : stream_(std::move(stream)),
      memory_(std::make_shared<client_internal::MemoryOps>(stream_)),
      info_(std::move(info)) {}

absl::StatusOr<std::unique_ptr<Session>> Session::Open(std::shared_ptr<grpc::Channel> channel,
                                                       const SessionOptions& options) {
  if (options.answer_margin <= absl::ZeroDuration() ||
      options.answer_margin == absl::InfiniteDuration()) {
    return ErrorStatus(
        v1::INVALID_ARGUMENT,
        absl::StrCat("SessionOptions::answer_margin must be positive and finite, not ",
                     absl::FormatDuration(options.answer_margin)));
  }
  if (options.call_timeout < absl::ZeroDuration()) {
    return ErrorStatus(v1::INVALID_ARGUMENT,
                       absl::StrCat("SessionOptions::call_timeout must not be negative, not ",
                                    absl::FormatDuration(options.call_timeout)));
  }
  absl::StatusOr<std::vector<std::string>> required =
      ExpandJailLayers(options.required_jail_layers, "SessionOptions::required_jail_layers");
  if (!required.ok()) return required.status();
  absl::StatusOr<std::shared_ptr<client_internal::SessionStream>> stream =
      client_internal::SessionStream::Start(std::move(channel), options.answer_margin);
  if (!stream.ok()) return stream.status();
  (*stream)->SetOutputHandler(options.on_output);
  v1::Request request;
  v1::OpenSession* open = request.mutable_open();
  open->set_call_timeout_ms(TimeoutMillis(options.call_timeout));
  open->set_restart(options.restart ? v1::RESTART : v1::NO_RESTART);
  open->set_memory_limit_bytes(options.memory_limit_bytes);
  for (const auto& [name, value] : options.environment) {
    FFIBOX_RETURN_IF_ERROR(CheckUtf8("SessionOptions::environment", name));
    FFIBOX_RETURN_IF_ERROR(CheckUtf8("SessionOptions::environment", value));
    (*open->mutable_environment())[name] = value;
  }
  open->set_scratch_directory(options.scratch_directory);
  open->set_idle_cpu_percent(options.idle_cpu_percent);
  absl::StatusOr<v1::Response> response =
      (*stream)->SendExpecting(std::move(request), v1::Response::kOpened);
  if (!response.ok()) return response.status();
  std::unique_ptr<Session> session(
      new Session(*std::move(stream), std::move(*response->mutable_opened())));
  session->stream_->SetMaxRequestBytes(session->info().max_message_bytes());
  session->stream_->SetCallTimeout(absl::Milliseconds(session->info().call_timeout_ms()));
  const auto& layers = session->info().jail_layers();
  std::vector<std::string> missing;
  for (const std::string& required : *required) {
    if (std::find(layers.begin(), layers.end(), required) == layers.end()) {
      missing.push_back(required);
    }
  }
  if (!missing.empty()) {
    return ErrorStatus(
        v1::JAIL_UNAVAILABLE,
        absl::StrCat("the server does not give this session's workers the jail layers ",
                     absl::StrJoin(missing, ", "),
                     " (it gives: ", layers.empty() ? "none" : absl::StrJoin(layers, ", "),
                     session->info().waived_jail_layers().empty()
                         ? ""
                         : absl::StrCat("; waived: ",
                                        absl::StrJoin(session->info().waived_jail_layers(), "; ")),
                     ")"));
  }
  if (options.same_host) {
    absl::Status enabled = session->EnableSameHost();
    if (!enabled.ok()) return enabled;
  }
  return session;
}

bool Session::same_host() const { return stream_->local_path_enabled(); }

uint64_t Session::same_host_scalar_calls() const { return stream_->scalar_answers_read(); }

uint64_t Session::same_host_scalar_invocations() const { return stream_->scalar_invocations_run(); }

uint64_t Session::same_host_worker_scalar_calls() const { return stream_->worker_scalar_calls(); }

absl::Status Session::EnableSameHost() {
  return stream_->EnableLocalPath(absl::Milliseconds(info().call_timeout_ms()));
}

Session::~Session() {
  if (!stream_->ForkedCopy().ok()) {
    // A child of fork(): the stream, its threads and its channel are the parent's, and
    // destroying this copy would end the parent's session (its gRPC stream, its ring). It
    // is left as it is.
    new std::shared_ptr<client_internal::SessionStream>(std::move(stream_));
    return;
  }
  Close().IgnoreError();
}

absl::StatusOr<Library> Session::Load(const std::string& path, bool global_symbols) {
  absl::StatusOr<std::string> sent = PathToLoad(path);
  if (!sent.ok()) return sent.status();
  v1::Request request;
  request.mutable_load_library()->set_path(*sent);
  request.mutable_load_library()->set_global(global_symbols);
  absl::StatusOr<v1::Response> response =
      stream_->SendExpecting(std::move(request), v1::Response::kLibrary);
  if (!response.ok()) return response.status();
  return Library(stream_, memory_, client_internal::PendingHandle::Answered(*std::move(response)),
                 path);
}

Library Session::LoadAsync(const std::string& path, bool global_symbols) {
  absl::StatusOr<std::string> sent = PathToLoad(path);
  v1::Request request;
  if (sent.ok()) request.mutable_load_library()->set_path(*sent);
  request.mutable_load_library()->set_global(global_symbols);
  std::future<absl::StatusOr<v1::Response>> answer =
      sent.ok() ? stream_->SendAsync(&request) : client_internal::RefusedAnswer(sent.status());
  return Library(
      stream_, memory_,
      client_internal::PendingHandle::Awaiting(request.id(), v1::Request::kLoadLibrary,
                                               v1::Response::kLibrary, std::move(answer), nullptr),
      path);
}

absl::StatusOr<v1::Response> Session::Send(v1::Request request) {
  return stream_->Send(std::move(request));
}

std::future<absl::StatusOr<v1::Response>> Session::SendAsync(v1::Request request) {
  return stream_->SendAsync(std::move(request));
}

absl::StatusOr<std::string> Session::ReadMemory(RemotePtr address, size_t size) {
  v1::Request request;
  *request.mutable_read_memory()->mutable_address() = ToRemoteAddress(address);
  request.mutable_read_memory()->set_size(size);
  absl::StatusOr<v1::Response> response = stream_->Send(std::move(request));
  if (!response.ok()) return response.status();
  if (!response->has_memory() || response->memory().data().size() != size) {
    return ErrorStatus(v1::INTERNAL, "the server answered ReadMemory with the wrong size");
  }
  return std::move(*response->mutable_memory()->mutable_data());
}

absl::Status Session::WriteMemory(RemotePtr address, absl::string_view data) {
  v1::Request request;
  *request.mutable_write_memory()->mutable_address() = ToRemoteAddress(address);
  request.mutable_write_memory()->set_data(data.data(), data.size());
  return ExpectDone(stream_->Send(std::move(request)), "WriteMemory");
}

absl::StatusOr<RemotePtr> Session::AllocMemory(size_t size) {
  v1::Request request;
  request.mutable_alloc_memory()->set_size(size);
  absl::StatusOr<v1::Response> response =
      stream_->SendExpecting(std::move(request), v1::Response::kAllocated);
  if (!response.ok()) return response.status();
  const v1::RemoteAddress& address = response->allocated().address();
  return RemotePtr(address.address(), address.generation());
}

absl::Status Session::FreeMemory(RemotePtr address) {
  v1::Request request;
  *request.mutable_free_memory()->mutable_address() = ToRemoteAddress(address);
  return ExpectDone(stream_->Send(std::move(request)), "FreeMemory");
}

absl::StatusOr<std::u32string> Session::ReadWString(RemotePtr address) {
  absl::StatusOr<v1::StringData> data =
      memory_->ReadString(ToRemoteAddress(address), /*wide=*/true);
  if (!data.ok()) return data.status();
  return client_internal::WideText(*data);
}

absl::Status Session::FillMemory(RemotePtr address, uint8_t byte, size_t size) {
  v1::Request request;
  *request.mutable_fill_memory()->mutable_address() = ToRemoteAddress(address);
  request.mutable_fill_memory()->set_byte(byte);
  request.mutable_fill_memory()->set_size(size);
  return ExpectDone(stream_->Send(std::move(request)), "FillMemory");
}

absl::Status Session::CopyMemory(RemotePtr destination, RemotePtr source, size_t size) {
  v1::Request request;
  *request.mutable_copy_memory()->mutable_destination() = ToRemoteAddress(destination);
  *request.mutable_copy_memory()->mutable_source() = ToRemoteAddress(source);
  request.mutable_copy_memory()->set_size(size);
  return ExpectDone(stream_->Send(std::move(request)), "CopyMemory");
}

absl::StatusOr<RawFunction> Session::ResolveAt(RemotePtr address, const v1::Signature& signature) {
  if (address.is_null()) {
    return ErrorStatus(v1::INVALID_ARGUMENT, "cannot call a NULL function pointer");
  }
  v1::Request request;
  *request.mutable_resolve_function()->mutable_address() = ToRemoteAddress(address);
  *request.mutable_resolve_function()->mutable_signature() = signature;
  absl::StatusOr<v1::Response> response =
      stream_->SendExpecting(std::move(request), v1::Response::kFunction);
  if (!response.ok()) return response.status();
  stream_->BindFunctionToGeneration(response->function().function(), address.generation);
  return RawFunction(stream_, memory_, response->function().function(),
                     absl::StrCat("function at 0x", absl::Hex(address.address)), signature,
                     address);
}

absl::StatusOr<v1::LayoutResult> Session::Layout(const v1::Type& type) {
  return memory_->WorkerLayout(type);
}

absl::StatusOr<std::string> Session::ReadCString(RemotePtr address) {
  absl::StatusOr<v1::StringData> data =
      memory_->ReadString(ToRemoteAddress(address), /*wide=*/false);
  if (!data.ok()) return data.status();
  return std::move(*data->mutable_data());
}

uint64_t Session::generation() const { return stream_->generation(); }

std::vector<v1::SessionEvent> Session::TakeEvents() { return stream_->TakeEvents(); }

absl::Status Session::Close() { return stream_->Close(); }

}  // namespace ffibox
