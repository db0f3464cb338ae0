#include "client/cpp/internal/memory_ops.h"

#include <utility>

#include "core/errors.h"

namespace ffibox {
namespace client_internal {

MemoryOps::MemoryOps(std::shared_ptr<SessionStream> stream) : stream_(std::move(stream)) {}

absl::StatusOr<v1::StringData> MemoryOps::ReadString(const v1::RemoteAddress& address, bool wide) {
  v1::Request request;
  *request.mutable_read_string()->mutable_address() = address;
  request.mutable_read_string()->set_wide(wide);
  FFIBOX_ASSIGN_OR_RETURN(v1::Response response,
                          stream_->SendExpecting(std::move(request), v1::Response::kString));
  return std::move(*response.mutable_string());
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
