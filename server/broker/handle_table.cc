#include "server/broker/handle_table.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/status_macros.h"

namespace ffibox {

absl::StatusOr<uint64_t> HandleTable::AddLibrary(std::string path, bool global) {
  if (libraries_.size() >= limits_.max_libraries) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED, absl::StrCat("a session may load at most ",
                                                            limits_.max_libraries, " libraries"));
  }
  Library& library = libraries_.emplace_back();
  library.path = std::move(path);
  library.global = global;
  return libraries_.size();
}

absl::Status HandleTable::CheckLibrary(uint64_t handle, absl::string_view field) const {
  if (handle == 0 || handle > libraries_.size() || libraries_[handle - 1].state == State::kFailed) {
    return ErrorStatus(v1::NOT_FOUND, absl::StrCat(field, ": no loaded library has handle ", handle,
                                                   LostNote(handle)));
  }
  return absl::OkStatus();
}

std::string HandleTable::LostNote(uint64_t library) const {
  if (library == 0 || library > libraries_.size() || libraries_[library - 1].lost.empty()) {
    return "";
  }
  return absl::StrCat(" (it was lost with its worker: ", libraries_[library - 1].lost, ")");
}

absl::StatusOr<uint64_t> HandleTable::AddFunction(Function function) {
  if (functions_.size() >= limits_.max_functions) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED, absl::StrCat("a session may resolve at most ",
                                                            limits_.max_functions, " functions"));
  }
  // What the kept copy takes of the broker's memory, not its encoded size: a field of a
  // few encoded bytes is a hundred parsed.
  const uint64_t bytes = sizeof(FunctionEntry) + function.signature.SpaceUsedLong() -
                         sizeof(function.signature) + function.symbol.capacity();
  FFIBOX_RETURN_IF_ERROR(Keep(bytes, "a function's signature"));
  const uint64_t handle = next_function_handle_++;
  functions_[handle] = FunctionEntry{std::move(function), State::kPending, bytes};
  return handle;
}

absl::Status HandleTable::Keep(uint64_t bytes, absl::string_view what) {
  if (bytes > limits_.max_kept_bytes - std::min(kept_bytes_, limits_.max_kept_bytes)) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat(what, " takes ", bytes,
                                    " bytes kept, more than the session may keep: its "
                                    "signatures and callback definitions hold ",
                                    kept_bytes_, " of at most ", limits_.max_kept_bytes, " bytes"));
  }
  kept_bytes_ += bytes;
  return absl::OkStatus();
}

void HandleTable::EraseCallback(uint64_t id) {
  auto callback = callbacks_.find(id);
  if (callback == callbacks_.end()) return;
  kept_bytes_ -= callback->second.bytes;
  callbacks_.erase(callback);
}

void HandleTable::NoteLoadRequest(uint64_t request_id, uint64_t handle) {
  load_requests_[request_id] = handle;
}

void HandleTable::NoteResolveRequest(uint64_t request_id, uint64_t handle) {
  resolve_requests_[request_id] = handle;
}

absl::StatusOr<uint64_t> HandleTable::LibraryOfRequest(uint64_t request_id,
                                                       absl::string_view field) const {
  auto made = load_requests_.find(request_id);
  if (made == load_requests_.end()) {
    return ErrorStatus(v1::NOT_FOUND, absl::StrCat(field, ": no load_library request with id ",
                                                   request_id, " was accepted"));
  }
  if (libraries_[made->second - 1].state == State::kFailed) {
    return ErrorStatus(v1::NOT_FOUND, absl::StrCat(field, ": the load_library request with id ",
                                                   request_id, " failed"));
  }
  return made->second;
}

absl::StatusOr<uint64_t> HandleTable::FunctionOfRequest(uint64_t request_id,
                                                        absl::string_view field) const {
  auto made = resolve_requests_.find(request_id);
  if (made == resolve_requests_.end()) {
    return ErrorStatus(v1::NOT_FOUND, absl::StrCat(field, ": no resolve_function request with id ",
                                                   request_id, " was accepted"));
  }
  auto entry = functions_.find(made->second);
  if (entry == functions_.end() || entry->second.state == State::kFailed) {
    return ErrorStatus(v1::NOT_FOUND, absl::StrCat(field, ": the resolve_function request with id ",
                                                   request_id, " failed"));
  }
  return made->second;
}

absl::StatusOr<const HandleTable::Function*> HandleTable::FindFunction(uint64_t handle) const {
  auto entry = functions_.find(handle);
  if (entry == functions_.end() || entry->second.state == State::kFailed ||
      !LostNote(entry->second.function.library).empty()) {
    std::string note;
    if (entry != functions_.end()) {
      note = LostNote(entry->second.function.library);
      if (note.empty() && !entry->second.lost.empty()) {
        note = absl::StrCat(" (it was lost with its worker: ", entry->second.lost, ")");
      }
    }
    return ErrorStatus(
        v1::NOT_FOUND,
        absl::StrCat("call.function: no resolved function has handle ", handle, note));
  }
  return &entry->second.function;
}

absl::StatusOr<uint64_t> HandleTable::AddCallback(const v1::DefineCallback& definition) {
  if (callbacks_.size() >= limits_.max_callbacks) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat("a session may define at most ", limits_.max_callbacks,
                                    " callbacks at once; free some with free_callback"));
  }
  const uint64_t bytes = sizeof(Callback) + definition.SpaceUsedLong();  // as kept, parsed
  FFIBOX_RETURN_IF_ERROR(Keep(bytes, "a callback's definition"));
  const uint64_t id = next_callback_handle_++;
  Callback callback;
  callback.definition = std::make_shared<const v1::DefineCallback>(definition);
  callback.bytes = bytes;
  callbacks_[id] = std::move(callback);
  return id;
}

std::shared_ptr<const v1::DefineCallback> HandleTable::CallbackDefinition(uint64_t id) const {
  auto callback = callbacks_.find(id);
  return callback == callbacks_.end() ? nullptr : callback->second.definition;
}

absl::Status HandleTable::MarkCallbackFreed(uint64_t id) {
  auto callback = callbacks_.find(id);
  if (callback == callbacks_.end() || callback->second.freed) {
    return ErrorStatus(v1::NOT_FOUND,
                       absl::StrCat("free_callback.callback: no callback has id ", id));
  }
  callback->second.freed = true;
  return absl::OkStatus();
}

void HandleTable::RecordOutcome(v1::Request::OpCase op, uint64_t handle, bool succeeded) {
  const State state = succeeded ? State::kReady : State::kFailed;
  if (op == v1::Request::kLoadLibrary && handle >= 1 && handle <= libraries_.size()) {
    libraries_[handle - 1].state = state;
  } else if (op == v1::Request::kResolveFunction) {
    auto entry = functions_.find(handle);
    if (entry == functions_.end()) return;
    entry->second.state = state;
    if (!succeeded) {
      // Kept only to answer requests that name it: its signature goes.
      kept_bytes_ -= entry->second.bytes;
      entry->second.bytes = 0;
      v1::Signature().Swap(&entry->second.function.signature);
      std::string().swap(entry->second.function.symbol);
    }
  } else if (op == v1::Request::kDefineCallback) {
    // A failed definition leaves no id behind (and does not count against the limit).
    auto callback = callbacks_.find(handle);
    if (callback == callbacks_.end()) return;
    if (succeeded) {
      callback->second.state = state;
    } else {
      EraseCallback(handle);
    }
  } else if (op == v1::Request::kFreeCallback) {
    // Freed, or unknown to the worker, or lost with it: gone in every case.
    EraseCallback(handle);
  }
}

void HandleTable::RecordLost(v1::Request::OpCase op, uint64_t handle, std::string why) {
  // Kept for the session's life and quoted in every later refusal: the worker's part of it
  // is untrusted text of any length.
  constexpr size_t kMaxLostBytes = 512;
  if (why.size() > kMaxLostBytes) {
    why.resize(kMaxLostBytes);
    while (!why.empty() && (static_cast<unsigned char>(why.back()) & 0xC0) == 0x80) {
      why.pop_back();  // not a UTF-8 sequence cut in two
    }
    if (!why.empty() && static_cast<unsigned char>(why.back()) >= 0xC0) why.pop_back();
    why += "...";
  }
  // Counted as a signature is: a worker whose every replay fails keeps the broker's memory
  // within the session's budget (past it, the handle is lost without its reason).
  if (!Keep(why.size(), "a lost handle's reason").ok()) why.clear();
  if (op == v1::Request::kLoadLibrary && handle >= 1 && handle <= libraries_.size()) {
    libraries_[handle - 1].lost = std::move(why);
  } else if (op == v1::Request::kResolveFunction) {
    auto entry = functions_.find(handle);
    if (entry != functions_.end()) entry->second.lost = std::move(why);
  }
}

std::vector<HandleTable::Replay> HandleTable::Replays() const {
  std::vector<Replay> replays;
  for (size_t i = 0; i < libraries_.size(); ++i) {
    if (libraries_[i].state != State::kReady) continue;
    Replay replay;
    replay.request.mutable_load_library()->set_path(libraries_[i].path);
    replay.request.mutable_load_library()->set_global(libraries_[i].global);
    replay.op = v1::Request::kLoadLibrary;
    replay.handle = i + 1;
    replay.label = absl::StrCat("dlopen ", libraries_[i].path, " (replay)");
    replays.push_back(std::move(replay));
  }
  for (const auto& [handle, entry] : functions_) {
    // Functions resolved by address belong to their worker generation only.
    if (entry.state != State::kReady || entry.function.generation != 0) continue;
    Replay replay;
    v1::ResolveFunction* resolve = replay.request.mutable_resolve_function();
    resolve->set_library(entry.function.library);
    resolve->set_symbol(entry.function.symbol);
    *resolve->mutable_signature() = entry.function.signature;
    replay.op = v1::Request::kResolveFunction;
    replay.handle = handle;
    replay.label = absl::StrCat("dlsym ", entry.function.symbol, " (replay)");
    replays.push_back(std::move(replay));
  }
  for (const auto& [id, callback] : callbacks_) {
    // Callback ids are stable: the new worker defines them again, at new addresses.
    if (callback.state != State::kReady || callback.freed) continue;
    Replay replay;
    *replay.request.mutable_define_callback() = *callback.definition;
    replay.op = v1::Request::kDefineCallback;
    replay.handle = id;
    replay.label = absl::StrCat("define_callback ", id, " (replay)");
    replays.push_back(std::move(replay));
  }
  return replays;
}

}  // namespace ffibox
