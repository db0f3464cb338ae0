#include "client/cpp/internal/memory_ops.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/call_shape.h"
#include "core/errors.h"

namespace ffibox {
namespace client_internal {
namespace {

// The server's bound on a string read without a length (core/call_shape.h), which raw
// reads keep too.
constexpr size_t kMaxWideUnits = kMaxStringUnits;
constexpr uint64_t kPageBytes = 4096;

}  // namespace

MemoryOps::MemoryOps(std::shared_ptr<SessionStream> stream) : stream_(std::move(stream)) {}

absl::StatusOr<v1::StringData> MemoryOps::ReadString(const v1::RemoteAddress& address, bool wide) {
  v1::Request request;
  *request.mutable_read_string()->mutable_address() = address;
  request.mutable_read_string()->set_wide(wide);
  absl::StatusOr<v1::Response> response =
      stream_->SendExpecting(std::move(request), v1::Response::kString);
  if (!response.ok()) {
    if (!wide || ErrorCodeOf(response.status()) != v1::INVALID_ARGUMENT) return response.status();
    v1::StringData raw;
    FFIBOX_ASSIGN_OR_RETURN(*raw.mutable_data(), ReadWideUnits(address));
    return raw;
  }
  return std::move(*response->mutable_string());
}

absl::StatusOr<std::string> MemoryOps::ReadWideUnits(const v1::RemoteAddress& address) {
  std::string units;
  v1::RemoteAddress at = address;
  while (units.size() < 4 * kMaxWideUnits) {
    const uint64_t room = kPageBytes - at.address() % kPageBytes;
    const uint64_t size = room - room % 4 == 0 ? 4 : room - room % 4;
    v1::Request request;
    *request.mutable_read_memory()->mutable_address() = at;
    request.mutable_read_memory()->set_size(size);
    FFIBOX_ASSIGN_OR_RETURN(v1::Response response,
                            stream_->SendExpecting(std::move(request), v1::Response::kMemory));
    const std::string& chunk = response.memory().data();
    if (chunk.size() != size) {
      return ErrorStatus(v1::INTERNAL, "the server answered read_memory with the wrong size");
    }
    for (size_t offset = 0; offset < chunk.size(); offset += 4) {
      if (chunk.compare(offset, 4, "\0\0\0\0", 4) == 0) {
        return units.append(chunk, 0, offset);
      }
    }
    units += chunk;
    at.set_address(at.address() + size);
  }
  return ErrorStatus(v1::RESOURCE_EXHAUSTED, absl::StrCat("the wide string is at least ",
                                                          kMaxWideUnits, " characters long"));
}

absl::StatusOr<v1::Value> MemoryOps::ReadTyped(const v1::RemoteAddress& address,
                                               const v1::Type& type) {
  v1::Request request;
  *request.mutable_read_memory()->mutable_address() = address;
  *request.mutable_read_memory()->mutable_type() = type;
  FFIBOX_ASSIGN_OR_RETURN(v1::Response response,
                          stream_->SendExpecting(std::move(request), v1::Response::kMemory));
  if (!response.memory().has_value()) {
    return ErrorStatus(v1::INTERNAL, "the server answered a typed read_memory without a value");
  }
  return std::move(*response.mutable_memory()->mutable_value());
}

absl::Status MemoryOps::WriteTyped(const v1::RemoteAddress& address, const v1::Type& type,
                                   const v1::Value& value) {
  v1::Request request;
  *request.mutable_write_memory()->mutable_address() = address;
  *request.mutable_write_memory()->mutable_type() = type;
  *request.mutable_write_memory()->mutable_value() = value;
  return stream_->SendExpecting(std::move(request), v1::Response::kDone).status();
}

absl::StatusOr<v1::LayoutResult> MemoryOps::WorkerLayout(const v1::Type& type) {
  v1::Request request;
  *request.mutable_get_layout()->mutable_type() = type;
  FFIBOX_ASSIGN_OR_RETURN(v1::Response response,
                          stream_->SendExpecting(std::move(request), v1::Response::kLayout));
  return std::move(*response.mutable_layout());
}

bool MemoryOps::IsLayoutVerified(const void* key) { return layouts_.Contains(key); }

void MemoryOps::MarkLayoutVerified(const void* key) { layouts_.Insert(key); }

}  // namespace client_internal
}  // namespace ffibox
