#include "server/worker/executor.h"

#include <dlfcn.h>
#include <link.h>
#include <locale.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/call_shape.h"
#include "core/descriptor_passing.h"
#include "core/errors.h"
#include "core/layout.h"
#include "core/marshal.h"
#include "core/safe_memory.h"
#include "server/worker/own_descriptors.h"

namespace ffibox {

namespace {

// Gives a library loaded through its descriptor the name it was admitted under (an absolute
// path), where the loader named it by the descriptor: dladdr and dl_iterate_phdr report that
// name, and bindings find their libraries by it (threadpoolctl looks for libgomp among the
// loaded objects, a library may look for its data beside itself). The descriptor's name
// stays among the object's names, by which the loader still recognizes it. Constructors,
// which dlopen ran, saw the descriptor's name. Nothing when the object already had another
// name (the same file, loaded before).
void NameLoadedLibrary(void* library, const std::string& descriptor_path,
                       const std::string& admitted_path) {
  struct link_map* map = nullptr;
  if (dlinfo(library, RTLD_DI_LINKMAP, &map) != 0 || map == nullptr || map->l_name == nullptr ||
      descriptor_path != map->l_name || admitted_path.empty() || admitted_path[0] != '/') {
    return;
  }
  // The loader frees the name when it unloads the object; its own string is left alone.
  if (char* name = strdup(admitted_path.c_str())) map->l_name = name;
}

// Moves a successful result into its slot of the response; the caller clears the result
// when the status is an error.
template <typename T>
absl::Status Store(absl::StatusOr<T> result, T* slot) {
  if (!result.ok()) return result.status();
  *slot = *std::move(result);
  return absl::OkStatus();
}

constexpr char kDescriptorPaths[] = "/proc/self/fd/";
constexpr size_t kDescriptorPathsLength = sizeof(kDescriptorPaths) - 1;

// `reason` (a dlopen or dlsym error) with each descriptor path it names ("/proc/self/fd/7",
// where the worker loaded a library from) replaced by `name(path)`: the client asked for a
// library by its own path, and the descriptor means nothing to it.
template <typename Name>
std::string NamingLibraries(absl::string_view reason, Name name) {
  std::string text(reason);
  for (size_t at = text.find(kDescriptorPaths); at != std::string::npos;
       at = text.find(kDescriptorPaths, at + 1)) {
    size_t end = at + kDescriptorPathsLength;
    while (end < text.size() && absl::ascii_isdigit(text[end])) ++end;
    if (end == at + kDescriptorPathsLength) continue;
    const std::string named = name(text.substr(at, end - at));
    text.replace(at, end - at, named);
    at += named.size() - 1;
  }
  return text;
}

// What a load that failed for want of address space adds to the loader's reason, which
// says only "failed to map segment from shared object" (glibc keeps no errno for it): the
// worker's cap, the session's memory limit, which the library and its dependencies did
// not fit under. Empty for any other failure, or with no cap.
std::string MemoryCapNote(absl::string_view reason) {
  rlimit limit{};
  if ((!absl::StrContains(reason, "failed to map segment") &&
       !absl::StrContains(reason, "cannot map zero-fill pages")) ||
      getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return "";
  }
  return absl::StrCat(" (the worker's address space is capped at ", limit.rlim_cur >> 20,
                      " MiB, the session's memory limit, which may be too little for it)");
}

// What native code printed to stdout without ending the line (stdout is line-buffered: a
// prompt, a progress dot) goes to the broker before the answer, not when a later line or
// the worker's end flushes it (which, for a worker that is killed, is never).
void FlushLibraryOutput() {
  if (__fpending(stdout) != 0) fflush(stdout);
}

}  // namespace

v1::Response WorkerExecutor::Execute(const internal::WorkerRequest& wrapped) {
  v1::Response response;
  Execute(wrapped, &response);
  return response;
}

void WorkerExecutor::Execute(const internal::WorkerRequest& wrapped, v1::Response* out,
                             absl::Span<char> shared) {
  const v1::Request& request = wrapped.request();
  v1::Response& response = *out;
  response.set_id(wrapped.id());
  absl::Status status;
  switch (request.op_case()) {
    case v1::Request::kLoadLibrary:
      // The session's environment, before the library's constructors run, and the
      // character type locale it names (LANG, LC_CTYPE, LC_ALL), which a Python process
      // takes from its environment at startup too.
      for (const auto& [name, value] : wrapped.environment()) {
        setenv(name.c_str(), value.c_str(), 1);
      }
      if (!wrapped.environment().empty() && !locale_set_) {
        setlocale(LC_CTYPE, "");  // once: a later load leaves what the library set alone
        locale_set_ = true;
      }
      status = LoadLibrary(wrapped.handle(), request.load_library(),
                           wrapped.library_descriptor() ? wrapped.id() : 0);
      if (status.ok()) response.mutable_library()->set_library(wrapped.handle());
      break;
    case v1::Request::kResolveFunction:
      status = Store(ResolveFunction(wrapped.handle(), request.resolve_function()),
                     response.mutable_function());
      break;
    case v1::Request::kCall:
      status = Call(request.call(), response.mutable_call(), /*report_changed=*/true, shared);
      break;
    case v1::Request::kBatch:
      status = Batch(request.batch(), response.mutable_batch());
      break;
    case v1::Request::kGetLayout:
      status = Store(GetLayout(request.get_layout()), response.mutable_layout());
      break;
    case v1::Request::kLookupSymbol:
      status = Store(LookupSymbol(request.lookup_symbol()), response.mutable_symbol());
      break;
    case v1::Request::kReadMemory:
      status = Store(memory_.Read(request.read_memory()), response.mutable_memory());
      break;
    case v1::Request::kReadMemoryList:
      status = Store(memory_.ReadList(request.read_memory_list()), response.mutable_memory_list());
      break;
    case v1::Request::kAllocMemory:
      status = Store(memory_.Alloc(request.alloc_memory()), response.mutable_allocated());
      break;
    case v1::Request::kReadString:
      status = Store(memory_.ReadString(request.read_string()), response.mutable_string());
      break;
    case v1::Request::kWriteMemory: {
      absl::StatusOr<bool> watched = memory_.Write(request.write_memory());
      status = watched.status();
      if (watched.ok()) response.mutable_done()->set_watched(*watched);
      break;
    }
    case v1::Request::kFreeMemory:
      status = memory_.Free(request.free_memory());
      response.mutable_done();
      break;
    case v1::Request::kFillMemory:
      status = memory_.Fill(request.fill_memory());
      response.mutable_done();
      break;
    case v1::Request::kCopyMemory:
      status = memory_.Copy(request.copy_memory());
      response.mutable_done();
      break;
    case v1::Request::kDefineCallback:
      status = Store(callbacks_.Define(wrapped.handle(), request.define_callback()),
                     response.mutable_callback());
      break;
    case v1::Request::kFreeCallback:
      status = callbacks_.Free(request.free_callback().callback());
      response.mutable_done();
      break;
    case v1::Request::kPing:
      response.mutable_done();
      break;
    default:
      status = ErrorStatus(v1::UNIMPLEMENTED, "the worker does not implement this operation");
  }
  FlushLibraryOutput();
  if (!status.ok()) SetFailure(status, out);
}

void WorkerExecutor::SetFailure(const absl::Status& status, v1::Response* response) {
  // A failed batch still reports the calls that ran before the failing one.
  if (!response->has_batch()) response->clear_result();
  *response->mutable_error() = ToProtoError(status);
}

void* WorkerExecutor::FindLibrary(uint64_t handle) {
  absl::MutexLock lock(&mu_);
  auto library = libraries_.find(handle);
  return library == libraries_.end() ? nullptr : library->second;
}

absl::StatusOr<int> WorkerExecutor::TakeDescriptor(uint64_t tag) {
  if (descriptor_fd_ < 0) {
    return absl::UnavailableError("the broker passed a descriptor but there is no socket");
  }
  absl::MutexLock lock(&descriptors_mu_);
  for (;;) {
    auto early = early_descriptors_.find(tag);
    if (early != early_descriptors_.end()) {
      int fd = early->second;
      early_descriptors_.erase(early);
      return fd;
    }
    absl::StatusOr<TaggedDescriptor> received = ReceiveDescriptor(descriptor_fd_);
    if (!received.ok()) {
      return absl::UnavailableError(
          absl::StrCat("no descriptor from the broker: ", received.status().message()));
    }
    if (received->tag == tag) return received->fd;
    if (!early_descriptors_.try_emplace(received->tag, received->fd).second) close(received->fd);
  }
}

absl::Status WorkerExecutor::LoadLibrary(uint64_t handle, const v1::LoadLibrary& load,
                                         uint64_t descriptor_tag) {
  if (FindLibrary(handle) != nullptr) {
    return InvalidArgumentAt("load_library", absl::StrCat("library handle ", handle, " in use"));
  }
  // The broker opened the file it admitted: load that descriptor. It stays open for the
  // worker's life, so its /proc/self/fd name stays unique (the loader recognizes an
  // already-loaded object by that name), above the numbers a library uses
  // (server/worker/own_descriptors.h).
  std::string path = load.path();
  int library_fd = -1;
  std::optional<std::pair<dev_t, ino_t>> file;  // the descriptor's file
  if (descriptor_tag != 0) {
    absl::StatusOr<int> fd = TakeDescriptor(descriptor_tag);
    if (!fd.ok()) {
      return ErrorStatus(v1::LIBRARY_LOAD_FAILED,
                         absl::StrCat(fd.status().message(), " (", load.path(), ")"));
    }
    library_fd = MoveKeptDescriptorUp(*fd);
    path = absl::StrCat("/proc/self/fd/", library_fd);
    // A file loaded before through another descriptor (ctypes code makes a CDLL of a
    // library again and again): loaded by that descriptor's name, which the loader knows,
    // and this one closed. Loaded by its own, the loader would add its name to the object,
    // so that it would have to stay open for good: one more for each load, until the worker
    // ran out of descriptors.
    struct stat status;
    if (fstat(library_fd, &status) == 0) file.emplace(status.st_dev, status.st_ino);
    absl::MutexLock lock(&mu_);
    if (auto known = file.has_value() ? descriptor_of_file_.find(*file) : descriptor_of_file_.end();
        known != descriptor_of_file_.end()) {
      close(library_fd);
      library_fd = -1;
      path = known->second;
    }
  }
  // Unlocked: the library's constructors may call stored callbacks, which may re-enter.
  dlerror();
  void* library = dlopen(path.c_str(), RTLD_NOW | (load.global() ? RTLD_GLOBAL : RTLD_LOCAL));
  if (library == nullptr && library_fd >= 0) close(library_fd);  // nothing keeps it
  if (library == nullptr) {
    const char* reason = dlerror();
    return ErrorStatus(
        v1::LIBRARY_LOAD_FAILED,
        absl::StrCat("cannot load ", load.path(), ": ",
                     reason != nullptr
                         ? NamingLibraries(reason, [&](const std::string&) { return load.path(); })
                         : "unknown dlopen error",
                     reason != nullptr ? MemoryCapNote(reason) : ""));
  }
  absl::MutexLock lock(&mu_);
  if (!libraries_.try_emplace(handle, library).second) {
    return InvalidArgumentAt("load_library", absl::StrCat("library handle ", handle, " in use"));
  }
  if (library_fd >= 0) {
    loaded_from_[path] = load.path();
    if (file.has_value()) descriptor_of_file_.try_emplace(*file, path);
    NameLoadedLibrary(library, path, load.path());
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::FunctionResolved> WorkerExecutor::ResolveFunction(
    uint64_t handle, const v1::ResolveFunction& resolve) {
  {
    absl::MutexLock lock(&mu_);
    if (functions_.contains(handle)) {
      return InvalidArgumentAt("resolve_function",
                               absl::StrCat("function handle ", handle, " in use"));
    }
  }
  void* address = nullptr;
  if (resolve.has_address()) {
    // A function pointer the library returned: only meaningful in the generation that
    // produced it. Calling a bad one may crash this worker, which is contained.
    absl::StatusOr<uint64_t> resolved =
        memory_.Resolve(resolve.address(), "resolve_function.address");
    if (!resolved.ok()) return resolved.status();
    if (*resolved == 0) return InvalidArgumentAt("resolve_function.address", "is NULL");
    address = reinterpret_cast<void*>(*resolved);
  } else {
    void* library = FindLibrary(resolve.library());
    if (library == nullptr) {
      return ErrorStatus(v1::NOT_FOUND,
                         absl::StrCat("library handle ", resolve.library(), " is not loaded"));
    }
    dlerror();
    address = dlsym(library, resolve.symbol().c_str());
    if (address == nullptr) {
      const char* reason = dlerror();
      std::string named;
      if (reason != nullptr) {
        absl::MutexLock lock(&mu_);
        named = NamingLibraries(reason, [&](const std::string& descriptor) {
          auto found = loaded_from_.find(descriptor);
          return found != loaded_from_.end() ? found->second : descriptor;
        });
      }
      return ErrorStatus(v1::SYMBOL_NOT_FOUND,
                         absl::StrCat("symbol ", resolve.symbol(), " not found",
                                      reason != nullptr ? absl::StrCat(": ", named) : ""));
    }
  }
  absl::StatusOr<std::unique_ptr<PreparedFunction>> prepared =
      PreparedFunction::Create(address, resolve.signature(), limits_);
  if (!prepared.ok()) return PrefixField(prepared.status(), "resolve_function");
  {
    absl::MutexLock lock(&mu_);
    if (!functions_.try_emplace(handle, std::move(*prepared)).second) {
      return InvalidArgumentAt("resolve_function",
                               absl::StrCat("function handle ", handle, " in use"));
    }
  }
  v1::FunctionResolved resolved;
  resolved.set_function(handle);
  resolved.mutable_address()->set_address(reinterpret_cast<uintptr_t>(address));
  resolved.mutable_address()->set_generation(generation_);
  return resolved;
}

const PreparedFunction* WorkerExecutor::FindFunction(uint64_t handle) {
  absl::MutexLock lock(&mu_);
  auto found = functions_.find(handle);
  return found != functions_.end() ? found->second.get() : nullptr;
}

absl::Status WorkerExecutor::Call(const v1::Call& call, v1::CallResult* result, bool report_changed,
                                  absl::Span<char> shared) {
  const PreparedFunction* function = FindFunction(call.function());
  if (function == nullptr) {
    ApplyReleases(call, generation_, limits_.max_blocks, &memory_);  // as Invoke does first
    return ErrorStatus(v1::NOT_FOUND,
                       absl::StrCat("function handle ", call.function(), " is not resolved"));
  }
  // Unlocked: the function may call closures whose invocations run nested requests here.
  return function->Invoke(call, generation_, &callbacks_, &memory_, result, report_changed, shared);
}

std::optional<absl::Status> WorkerExecutor::CallScalar(uint64_t function,
                                                       absl::Span<const ScalarBits> args,
                                                       v1::CallResult* result) {
  const PreparedFunction* prepared = FindFunction(function);
  if (prepared == nullptr) return std::nullopt;
  // Unlocked, as Call: the function may call closures whose invocations run requests here.
  std::optional<absl::Status> status =
      prepared->InvokeScalar(args, generation_, &callbacks_, &memory_, result);
  FlushLibraryOutput();
  return status;
}

absl::Status WorkerExecutor::Batch(const v1::Batch& batch, v1::BatchResult* results) {
  // The same limits the broker checked: a worker distrusts what reaches it.
  if (absl::Status shape = ValidateBatchShape(batch, limits_); !shape.ok()) return shape;
  results->mutable_results()->Reserve(batch.calls_size());
  for (int i = 0; i < batch.calls_size(); ++i) {
    // What the library changed in watched blocks is reported once, as it is after the
    // batch: a batch of many calls rewriting one block would otherwise repeat it each time.
    const bool last = i + 1 == batch.calls_size();
    absl::Status status = Call(batch.calls(i), results->add_results(), last);
    if (!status.ok()) {
      results->mutable_results()->RemoveLast();
      return InBatch(status, i);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::SymbolFound> WorkerExecutor::LookupSymbol(const v1::LookupSymbol& request) {
  void* library = FindLibrary(request.library());
  if (library == nullptr) {
    return ErrorStatus(v1::NOT_FOUND,
                       absl::StrCat("library handle ", request.library(), " is not loaded"));
  }
  dlerror();
  void* address = dlsym(library, request.symbol().c_str());
  if (address == nullptr) {
    return ErrorStatus(v1::SYMBOL_NOT_FOUND,
                       absl::StrCat("symbol ", request.symbol(), " not found"));
  }
  v1::SymbolFound found;
  found.mutable_address()->set_address(reinterpret_cast<uintptr_t>(address));
  found.mutable_address()->set_generation(generation_);
  if (!request.has_type()) return found;

  absl::Status valid = ValidateType(request.type(), limits_, "lookup_symbol.type");
  if (!valid.ok()) return valid;
  uint64_t size = 0;
  uint64_t alignment = 0;
  absl::Status sized = ComputeSizeAndAlignment(request.type(), &size, &alignment);
  if (!sized.ok()) return sized;
  if (size > kMaxMemoryRequestBytes) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat("lookup_symbol.type: ", size, " bytes exceeds the limit of ",
                                    kMaxMemoryRequestBytes));
  }
  std::string bytes(size, '\0');
  absl::Status read = SafeRead(found.address().address(), bytes.data(), size);
  if (!read.ok()) return read;
  absl::Status converted = DecodeValue(request.type(), bytes, generation_, found.mutable_value());
  if (!converted.ok()) return PrefixField(converted, "lookup_symbol.type");
  return found;
}

absl::StatusOr<v1::LayoutResult> WorkerExecutor::GetLayout(const v1::GetLayout& request) {
  absl::Status valid = ValidateType(request.type(), limits_, "get_layout.type");
  if (!valid.ok()) return valid;
  absl::StatusOr<TypeLayout> layout = ComputeLayout(request.type());
  if (!layout.ok()) return layout.status();
  v1::LayoutResult result;
  result.set_size(layout->size);
  result.set_alignment(layout->alignment);
  for (const FieldLayout& field : layout->fields) {
    v1::FieldLayout* out = result.add_fields();
    out->set_name(field.name);
    out->set_offset(field.offset);
    out->set_bit_offset(field.bit_offset);
    out->set_bit_width(field.bit_width);
    out->set_size(field.size);
    out->set_alignment(field.alignment);
  }
  return result;
}

}  // namespace ffibox
