#include "server/worker_reply.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "server/worker_protocol.pb.h"

namespace ffibox {
namespace {

v1::Response::ResultCase ExpectedResult(v1::Request::OpCase op) {
  switch (op) {
    case v1::Request::kLoadLibrary:
      return v1::Response::kLibrary;
    case v1::Request::kResolveFunction:
      return v1::Response::kFunction;
    case v1::Request::kCall:
      return v1::Response::kCall;
    case v1::Request::kGetLayout:
      return v1::Response::kLayout;
    case v1::Request::kLookupSymbol:
      return v1::Response::kSymbol;
    case v1::Request::kReadMemory:
      return v1::Response::kMemory;
    case v1::Request::kAllocMemory:
      return v1::Response::kAllocated;
    case v1::Request::kReadString:
      return v1::Response::kString;
    case v1::Request::kWriteMemory:
    case v1::Request::kFreeMemory:
    case v1::Request::kFillMemory:
    case v1::Request::kCopyMemory:
    case v1::Request::kPing:
      return v1::Response::kDone;
    default:
      return v1::Response::RESULT_NOT_SET;
  }
}

absl::Status CheckReturnedBlocks(const v1::CallResult& result, const PendingRequest& expected) {
  std::vector<bool> seen(expected.returned_block_sizes.size(), false);
  for (const v1::BlockContents& block : result.blocks()) {
    if (block.block() >= expected.returned_block_sizes.size() || seen[block.block()]) {
      return absl::InvalidArgumentError(
          absl::StrCat("returned block ", block.block(), " was not sent or came back twice"));
    }
    seen[block.block()] = true;
    uint64_t size = expected.returned_block_sizes[block.block()];
    if (size == PendingRequest::kNotReturned || block.data().size() != size) {
      return absl::InvalidArgumentError(absl::StrCat("returned block ", block.block(), " has ",
                                                     block.data().size(), " bytes, expected ",
                                                     size));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::Response> ParseWorkerReply(absl::string_view frame,
                                              const PendingRequest& expected) {
  internal::WorkerReply reply;
  if (!reply.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
    return absl::InvalidArgumentError("unparseable reply frame");
  }
  v1::Response response = std::move(*reply.mutable_response());
  if (response.id() != expected.sequence) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reply for request ", response.id(), " while request ", expected.sequence, " was running"));
  }
  if (response.has_error()) {
    if (response.result_case() != v1::Response::RESULT_NOT_SET) {
      return absl::InvalidArgumentError("reply carries both an error and a result");
    }
    v1::ErrorCode code = response.error().code();
    if (!v1::ErrorCode_IsValid(code) || code == v1::ERROR_CODE_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat("reply has unknown error code ", code));
    }
  } else {
    v1::Response::ResultCase want = ExpectedResult(expected.op);
    if (response.result_case() != want) {
      return absl::InvalidArgumentError(
          absl::StrCat("reply has result kind ", response.result_case(), ", expected ", want));
    }
    if (want == v1::Response::kLibrary && response.library().library() != expected.handle) {
      return absl::InvalidArgumentError("reply names another library handle");
    }
    if (want == v1::Response::kFunction && response.function().function() != expected.handle) {
      return absl::InvalidArgumentError("reply names another function handle");
    }
    if (want == v1::Response::kMemory && response.memory().data().size() != expected.read_size) {
      return absl::InvalidArgumentError(absl::StrCat("read_memory returned ",
                                                     response.memory().data().size(),
                                                     " bytes, expected ", expected.read_size));
    }
    if (want == v1::Response::kCall) {
      absl::Status blocks = CheckReturnedBlocks(response.call(), expected);
      if (!blocks.ok()) return blocks;
    }
  }
  response.set_id(expected.client_id);
  return response;
}

}  // namespace ffibox
