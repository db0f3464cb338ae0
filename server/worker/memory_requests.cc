#include "server/worker/memory_requests.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/call_shape.h"
#include "core/errors.h"
#include "core/layout.h"
#include "core/marshal.h"
#include "core/safe_memory.h"
#include "core/status_macros.h"
#include "core/types.h"
#include "core/utf8.h"

namespace ffibox {
namespace {

// What watching a block of `size` bytes takes of kMaxWatchedBytes: whole 8-byte words, the
// unit changes are reported in, so that one result reports at most kMaxWatchedBytes / 8 runs
// (core/encoding_limits.h).
uint64_t WatchedCost(uint64_t size) { return (size + 7) / 8 * 8; }

absl::Status CheckSize(uint64_t size, absl::string_view field) {
  if (size > kMaxMemoryRequestBytes) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat(field, ": ", size, " bytes exceeds the limit of ",
                                    kMaxMemoryRequestBytes, " per request"));
  }
  return absl::OkStatus();
}

// The layout size of a type from a request, after validating it.
absl::StatusOr<uint64_t> TypeSize(const v1::Type& type, absl::string_view field) {
  absl::Status valid = ValidateType(type, TypeLimits(), field);
  if (!valid.ok()) return valid;
  uint64_t size = 0;
  uint64_t alignment = 0;
  absl::Status sized = ComputeSizeAndAlignment(type, &size, &alignment);
  if (!sized.ok()) return PrefixField(sized, field);
  return size;
}

}  // namespace

MemoryRequests::~MemoryRequests() {
  absl::MutexLock lock(&mu_);
  for (const auto& [address, size] : allocations_) std::free(reinterpret_cast<void*>(address));
}

void* MemoryRequests::AllocateRecorded(uint64_t size, uint64_t alignment) {
  // At least one byte, rounded up to the alignment as aligned_alloc requires.
  size = std::max<uint64_t>(size, 1);
  size = (size + alignment - 1) / alignment * alignment;
  void* memory = std::aligned_alloc(alignment, size);
  if (memory == nullptr) return nullptr;
  std::memset(memory, 0, size);
  absl::MutexLock lock(&mu_);
  allocations_[reinterpret_cast<uintptr_t>(memory)] = size;
  return memory;
}

absl::Status MemoryRequests::FreeRecorded(uint64_t address, absl::string_view field) {
  {
    absl::MutexLock lock(&mu_);
    Unwatch(address);
    if (allocations_.erase(address) == 0) {
      return ErrorStatus(v1::NOT_FOUND,
                         absl::StrCat(field, ": 0x", absl::Hex(address),
                                      " was not allocated by alloc_memory or kept by a call (or "
                                      "was freed)"));
    }
  }
  std::free(reinterpret_cast<void*>(address));
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> MemoryRequests::AllocateLasting(uint64_t size) {
  void* memory = AllocateRecorded(size, 16);
  if (memory == nullptr) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat("the worker cannot keep ", size, " bytes"));
  }
  return reinterpret_cast<uintptr_t>(memory);
}

absl::StatusOr<uint64_t> MemoryRequests::FindLasting(const v1::RemoteAddress& address,
                                                     uint64_t size, absl::string_view field) const {
  absl::StatusOr<uint64_t> resolved = Resolve(address, field);
  if (!resolved.ok()) return resolved.status();
  absl::MutexLock lock(&mu_);
  auto found = allocations_.find(*resolved);
  if (found == allocations_.end()) {
    return ErrorStatus(v1::NOT_FOUND, absl::StrCat(field, ": 0x", absl::Hex(*resolved),
                                                   " is not memory a call kept or alloc_memory "
                                                   "allocated (or it was freed)"));
  }
  if (found->second < size) {
    return InvalidArgumentAt(
        field, absl::StrCat("the block of ", size, " bytes does not fit in the ", found->second,
                            " bytes kept at 0x", absl::Hex(*resolved)));
  }
  return *resolved;
}

void MemoryRequests::ReleaseLastingIfPresent(uint64_t address) {
  {
    absl::MutexLock lock(&mu_);
    Unwatch(address);
    if (allocations_.erase(address) == 0) return;
  }
  std::free(reinterpret_cast<void*>(address));
}

void MemoryRequests::ReleaseLastingAddress(uint64_t address) {
  FreeRecorded(address, "kept block").IgnoreError();
}

void MemoryRequests::Unwatch(uint64_t address) {
  auto found = watched_.find(address);
  if (found != watched_.end()) {
    watched_bytes_ -= WatchedCost(found->second.size());
    watched_.erase(found);
  }
  auto remembered = remembered_.find(address);
  if (remembered != remembered_.end()) {
    remembered_bytes_ -= remembered->second.size;
    remembered_.erase(remembered);
  }
}

void MemoryRequests::Watch(uint64_t address, const absl::string_view* contents) {
  absl::MutexLock lock(&mu_);
  Unwatch(address);
  if (contents == nullptr || !allocations_.contains(address)) {
    return;  // placed without `watch`, or not lasting memory
  }
  if (WatchedCost(contents->size()) <= kMaxWatchedBytes - watched_bytes_) {
    watched_.emplace(address, std::string(*contents));
    watched_bytes_ += WatchedCost(contents->size());
    return;
  }
  // Past the watch budget: remembered, when the budget and the worker's memory allow.
  if (contents->size() > kMaxRememberedBytes - remembered_bytes_) return;
  std::unique_ptr<char[]> bytes(new (std::nothrow) char[contents->size()]);
  if (bytes == nullptr) return;
  std::memcpy(bytes.get(), contents->data(), contents->size());
  remembered_.emplace(address, Remembered{std::move(bytes), contents->size()});
  remembered_bytes_ += contents->size();
}

bool MemoryRequests::WatchWritten(uint64_t address, absl::string_view contents) {
  {
    absl::MutexLock lock(&mu_);
    const auto block = allocations_.find(address);
    if (block == allocations_.end() || block->second < contents.size()) return false;
  }
  Watch(address, &contents);
  absl::MutexLock lock(&mu_);
  return watched_.contains(address);
}

const char* MemoryRequests::Held(uint64_t address, uint64_t* size) const {
  if (auto watched = watched_.find(address); watched != watched_.end()) {
    *size = watched->second.size();
    return watched->second.data();
  }
  if (auto remembered = remembered_.find(address); remembered != remembered_.end()) {
    *size = remembered->second.size;
    return remembered->second.bytes.get();
  }
  return nullptr;
}

bool MemoryRequests::PlaceClientChanges(uint64_t address, absl::string_view sent,
                                        const std::vector<uint64_t>& pointers) {
  absl::MutexLock lock(&mu_);
  uint64_t size = 0;
  const char* held = Held(address, &size);
  if (held == nullptr || size != sent.size()) return false;
  // The words the client changed since it was told the block's contents go in whole (a value
  // both changed is the client's, never a mix of the two), but for the pointers' bytes;
  // compared a page at a time first.
  char* placed = reinterpret_cast<char*>(address);
  size_t next = 0;  // the first pointer that may reach the word looked at
  const auto in_pointer = [&pointers, &next](size_t at) {
    for (size_t p = next; p < pointers.size() && pointers[p] <= at; ++p) {
      if (at < pointers[p] + sizeof(uint64_t)) return true;
    }
    return false;
  };
  constexpr size_t kPage = 4096;
  for (size_t at = 0; at < sent.size(); at += kPage) {
    const size_t end = std::min(at + kPage, sent.size());
    if (std::memcmp(sent.data() + at, held + at, end - at) == 0) continue;
    for (size_t word = at; word < end; word += 8) {
      const size_t length = std::min<size_t>(8, end - word);
      while (next < pointers.size() && pointers[next] + sizeof(uint64_t) <= word) ++next;
      if (std::memcmp(sent.data() + word, held + word, length) == 0) continue;
      bool changed = false;
      for (size_t i = word; i < word + length && !changed; ++i) {
        changed = sent[i] != held[i] && !in_pointer(i);
      }
      for (size_t i = word; changed && i < word + length; ++i) {
        if (!in_pointer(i)) placed[i] = sent[i];
      }
    }
  }
  return true;
}

bool MemoryRequests::HeldWordIs(uint64_t address, uint64_t offset, uint64_t value) {
  absl::MutexLock lock(&mu_);
  uint64_t size = 0;
  const char* held = Held(address, &size);
  if (held == nullptr || offset > size || size - offset < sizeof value) return false;
  return std::memcmp(held + offset, &value, sizeof value) == 0;
}

void MemoryRequests::UnwatchReads(uint64_t address) {
  auto first = watched_reads_.lower_bound({address, 0});
  auto last = first;
  for (; last != watched_reads_.end() && last->first.first == address; ++last) {
    watched_read_bytes_ -= WatchedCost(last->second.size());
  }
  watched_reads_.erase(first, last);
}

bool MemoryRequests::WatchRead(uint64_t address, const std::string& bytes) {
  absl::MutexLock lock(&mu_);
  const std::pair<uint64_t, uint64_t> key(address, bytes.size());
  auto found = watched_reads_.find(key);
  if (found != watched_reads_.end()) {
    found->second = bytes;  // the same range again: what the client holds now
    return true;
  }
  if (watched_reads_.size() >= kMaxWatchedReads ||
      WatchedCost(bytes.size()) > kMaxWatchedReadBytes - watched_read_bytes_) {
    return false;  // past a budget: not watched
  }
  watched_reads_.emplace(key, bytes);
  watched_read_bytes_ += WatchedCost(bytes.size());
  return true;
}

absl::Status MemoryRequests::WriteHeld(uint64_t address, const void* data, size_t size, bool held) {
  absl::Status written = SafeWrite(address, data, size);
  if (!written.ok() || !held || size == 0) return written;
  // The written range [address, end) overlaps a watched range [start, start + its size)
  // when each starts before the other ends: the bytes held of it take what was written.
  const uint64_t end = address + size;
  const char* bytes = static_cast<const char*>(data);
  const auto take = [&](uint64_t start, std::string& remembered) {
    if (start >= end || start + remembered.size() <= address) return;
    const uint64_t low = std::max(start, address);
    const uint64_t high = std::min<uint64_t>(start + remembered.size(), end);
    remembered.replace(low - start, high - low, bytes + (low - address), high - low);
  };
  absl::MutexLock lock(&mu_);
  for (auto& [key, remembered] : watched_reads_) {
    if (key.first >= end) break;  // in address order: none after it overlaps
    take(key.first, remembered);
  }
  for (auto& [start, remembered] : watched_) take(start, remembered);
  return absl::OkStatus();
}

void MemoryRequests::ReportRuns(uint64_t address, const char* now, std::string* held,
                                uint64_t generation, v1::CallResult* result) {
  if (std::memcmp(now, held->data(), held->size()) == 0) return;
  // Runs of changed words, so the client keeps what it changed elsewhere in the block.
  std::vector<std::pair<size_t, size_t>> runs;  // [start, end)
  for (size_t at = 0; at < held->size(); at += 8) {
    const size_t end = std::min(at + 8, held->size());
    if (std::memcmp(now + at, held->data() + at, end - at) == 0) continue;
    if (!runs.empty() && runs.back().second == at) {
      runs.back().second = end;
    } else {
      runs.emplace_back(at, end);
    }
  }
  if (runs.size() > kMaxChangedRuns) runs = {{runs.front().first, runs.back().second}};
  for (const auto& [start, end] : runs) {
    held->replace(start, end - start, now + start, end - start);
    v1::ChangedBlock* changed = result->add_changed();
    changed->mutable_address()->set_address(address);
    changed->mutable_address()->set_generation(generation);
    changed->set_offset(start);
    changed->set_data(held->data() + start, end - start);
  }
}

void MemoryRequests::ReportChanged(const std::vector<uint64_t>& placed, uint64_t generation,
                                   v1::CallResult* result) {
  absl::MutexLock lock(&mu_);
  for (auto& [address, held] : watched_) {
    if (std::find(placed.begin(), placed.end(), address) != placed.end()) continue;
    ReportRuns(address, reinterpret_cast<const char*>(address), &held, generation, result);
  }
  if (watched_reads_.empty()) return;
  // A read's memory may have been freed or unmapped since: copied through SafeReadEach.
  read_ranges_.clear();
  size_t total = 0;
  for (const auto& [key, held] : watched_reads_) {
    read_ranges_.push_back({key.first, held.size()});
    total += held.size();
  }
  read_now_.resize(total);
  SafeReadEach(read_ranges_, read_now_.data(), &readable_);
  size_t at = 0;
  size_t i = 0;
  for (auto watched = watched_reads_.begin(); watched != watched_reads_.end(); ++i) {
    // Unreadable (every error but EINTR, which SafeReadEach retries, counts): no longer
    // watched, with no report.
    if (!readable_[i]) {
      watched_read_bytes_ -= WatchedCost(watched->second.size());
      watched = watched_reads_.erase(watched);
    } else {
      ReportRuns(watched->first.first, read_now_.data() + at, &watched->second, generation, result);
      ++watched;
    }
    at += read_ranges_[i].size;
  }
}

absl::StatusOr<uint64_t> MemoryRequests::Resolve(const v1::RemoteAddress& address,
                                                 absl::string_view field) const {
  if (address.address() == 0) {
    // Whatever generation it names: NULL is no memory of any worker.
    return ErrorStatus(v1::MEMORY_FAULT,
                       absl::StrCat(field, ": NULL (address 0) cannot be read or written"));
  }
  if (address.generation() != generation_) {
    return ErrorStatus(v1::STALE_HANDLE,
                       absl::StrCat(field, ": address 0x", absl::Hex(address.address()),
                                    " belongs to worker generation ", address.generation(),
                                    "; this worker is generation ", generation_));
  }
  return address.address();
}

absl::StatusOr<v1::MemoryData> MemoryRequests::Read(const v1::ReadMemory& request) {
  absl::StatusOr<uint64_t> address = Resolve(request.address(), "read_memory.address");
  if (!address.ok()) return address.status();
  if (!request.unwatch().empty()) {  // whatever becomes of the read
    absl::MutexLock lock(&mu_);
    for (uint64_t unwatched : request.unwatch()) UnwatchReads(unwatched);
  }
  uint64_t size = request.size();
  if (request.has_type()) {
    absl::StatusOr<uint64_t> type_size = TypeSize(request.type(), "read_memory.type");
    if (!type_size.ok()) return type_size.status();
    if (size != 0 && size != *type_size) {
      return InvalidArgumentAt("read_memory.size",
                               absl::StrCat("is ", size, " but the type's size is ", *type_size,
                                            " (send 0 or the type's size)"));
    }
    size = *type_size;
  }
  absl::Status size_ok = CheckSize(size, "read_memory.size");
  if (!size_ok.ok()) return size_ok;
  v1::MemoryData data;
  std::string bytes(size, '\0');
  absl::Status read = SafeRead(*address, bytes.data(), bytes.size());
  if (!read.ok()) return read;
  if (!request.has_type()) {
    if (request.watch()) data.set_watched(WatchRead(*address, bytes));
    *data.mutable_data() = std::move(bytes);
    return data;
  }
  // Typed: the value only (records and arrays as raw bytes), `data` stays empty.
  absl::Status decoded = DecodeValue(request.type(), bytes, generation_, data.mutable_value());
  if (!decoded.ok()) return PrefixField(decoded, "read_memory.type");
  return data;
}

absl::StatusOr<v1::MemoryDataList> MemoryRequests::ReadList(const v1::ReadMemoryList& request) {
  uint64_t total = 0;
  for (int i = 0; i < request.reads_size(); ++i) {
    const v1::ReadMemory& read = request.reads(i);
    uint64_t size = read.size();
    if (read.has_type()) {
      absl::StatusOr<uint64_t> type_size =
          TypeSize(read.type(), absl::StrCat("read_memory_list.reads[", i, "].type"));
      if (!type_size.ok()) return type_size.status();
      size = *type_size;
    }
    if (size > kMaxMemoryRequestBytes - total) {
      return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                         absl::StrCat("read_memory_list: the reads' sizes together exceed the "
                                      "limit of ",
                                      kMaxMemoryRequestBytes, " bytes per request"));
    }
    total += size;
  }
  v1::MemoryDataList list;
  for (int i = 0; i < request.reads_size(); ++i) {
    absl::StatusOr<v1::MemoryData> read = Read(request.reads(i));
    if (!read.ok()) {
      const v1::Error error = ToProtoError(read.status());
      return ErrorStatus(error.code(),
                         absl::StrCat("read_memory_list.reads[", i, "]: ", error.message()));
    }
    *list.add_reads() = *std::move(read);
  }
  return list;
}

absl::StatusOr<bool> MemoryRequests::Write(const v1::WriteMemory& request) {
  absl::StatusOr<uint64_t> address = Resolve(request.address(), "write_memory.address");
  if (!address.ok()) return address.status();
  if (!request.has_type()) {
    if (request.has_value()) {
      return InvalidArgumentAt("write_memory.value", "a value needs write_memory.type");
    }
    FFIBOX_RETURN_IF_ERROR(
        WriteHeld(*address, request.data().data(), request.data().size(), request.held()));
    return request.watch() && WatchWritten(*address, request.data());
  }
  if (!request.data().empty()) {
    return InvalidArgumentAt("write_memory.data", "send either data or type and value, not both");
  }
  if (!request.has_value())
    return InvalidArgumentAt("write_memory.value", "is required with a type");
  absl::StatusOr<uint64_t> size = TypeSize(request.type(), "write_memory.type");
  if (!size.ok()) return size.status();
  absl::Status size_ok = CheckSize(*size, "write_memory.type");
  if (!size_ok.ok()) return size_ok;
  // Marshalled into zeroed bytes: the whole object is written, padding as zeros. No arena
  // and no blocks: string values and block pointers would not outlive this request.
  std::vector<uint64_t> bytes((*size + 7) / 8 + 1, 0);
  MarshalContext context;
  context.generation = generation_;
  context.callbacks = callbacks_;
  absl::Status marshalled = MarshalValue(request.type(), request.value(), context, bytes.data());
  if (!marshalled.ok()) return PrefixField(marshalled, "write_memory.value");
  FFIBOX_RETURN_IF_ERROR(WriteHeld(*address, bytes.data(), *size, request.held()));
  return false;
}

absl::StatusOr<v1::MemoryAllocated> MemoryRequests::Alloc(const v1::AllocMemory& request) {
  absl::Status size_ok = CheckSize(request.size(), "alloc_memory.size");
  if (!size_ok.ok()) return size_ok;
  uint64_t alignment = request.alignment() == 0 ? 16 : request.alignment();
  if (alignment > 4096 || (alignment & (alignment - 1)) != 0) {
    return InvalidArgumentAt("alloc_memory.alignment", "must be a power of two up to 4096");
  }
  alignment = std::max<uint64_t>(alignment, sizeof(void*));
  void* memory = AllocateRecorded(request.size(), alignment);
  if (memory == nullptr) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat("the worker cannot allocate ", request.size(), " bytes"));
  }
  uint64_t address = reinterpret_cast<uintptr_t>(memory);
  v1::MemoryAllocated allocated;
  allocated.mutable_address()->set_address(address);
  allocated.mutable_address()->set_generation(generation_);
  return allocated;
}

absl::Status MemoryRequests::Free(const v1::FreeMemory& request) {
  absl::StatusOr<uint64_t> address = Resolve(request.address(), "free_memory.address");
  if (!address.ok()) return address.status();
  return FreeRecorded(*address, "free_memory.address");
}

absl::Status MemoryRequests::Fill(const v1::FillMemory& request) {
  absl::Status size_ok = CheckSize(request.size(), "fill_memory.size");
  if (!size_ok.ok()) return size_ok;
  if (request.byte() > 0xFF) return InvalidArgumentAt("fill_memory.byte", "must be 0..255");
  absl::StatusOr<uint64_t> address = Resolve(request.address(), "fill_memory.address");
  if (!address.ok()) return address.status();
  std::string pattern(request.size(), static_cast<char>(request.byte()));
  return SafeWrite(*address, pattern.data(), pattern.size());
}

absl::Status MemoryRequests::Copy(const v1::CopyMemory& request) {
  absl::Status size_ok = CheckSize(request.size(), "copy_memory.size");
  if (!size_ok.ok()) return size_ok;
  absl::StatusOr<uint64_t> destination = Resolve(request.destination(), "copy_memory.destination");
  if (!destination.ok()) return destination.status();
  absl::StatusOr<uint64_t> source = Resolve(request.source(), "copy_memory.source");
  if (!source.ok()) return source.status();
  // Reading everything first gives memmove semantics for overlapping ranges.
  std::string bytes(request.size(), '\0');
  absl::Status read = SafeRead(*source, bytes.data(), bytes.size());
  if (!read.ok()) return read;
  return SafeWrite(*destination, bytes.data(), bytes.size());
}

absl::StatusOr<v1::StringData> MemoryRequests::ReadString(const v1::ReadString& request) const {
  absl::StatusOr<uint64_t> address = Resolve(request.address(), "read_string.address");
  if (!address.ok()) return address.status();
  uint64_t max_units =
      request.max_length() == 0 ? kMaxStringUnits : std::min(request.max_length(), kMaxStringUnits);
  // Without a max_length, a string that reaches the cap is longer than a read returns:
  // refused, never cut short.
  const auto too_long = [&]() {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat("read_string: the string at 0x", absl::Hex(*address),
                                    " has no terminator within its first ", kMaxStringUnits,
                                    " characters, the most one read returns"));
  };
  v1::StringData data;
  if (!request.wide()) {
    absl::StatusOr<std::string> text = SafeReadCString(*address, max_units);
    if (!text.ok()) return text.status();
    if (request.max_length() == 0 && text->size() >= kMaxStringUnits) return too_long();
    *data.mutable_data() = std::move(*text);
    return data;
  }
  absl::StatusOr<std::u32string> wide = SafeReadWString(*address, max_units);
  if (!wide.ok()) return wide.status();
  if (request.max_length() == 0 && wide->size() >= kMaxStringUnits) return too_long();
  if (!EncodeUtf8(*wide, data.mutable_text())) {
    return ErrorStatus(v1::INVALID_ARGUMENT,
                       "read_string: the wide string holds a value that is not a Unicode "
                       "character");
  }
  return data;
}

}  // namespace ffibox
