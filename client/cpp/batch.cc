#include "client/cpp/batch.h"

#include <algorithm>
#include <utility>

#include "client/cpp/internal/batch_arena.h"
#include "core/call_shape.h"
#include "core/errors.h"

namespace ffibox {

Batch::Batch(std::shared_ptr<client_internal::SessionStream> stream,
             std::shared_ptr<client_internal::MemoryOps> memory)
    : stream_(std::move(stream)),
      memory_(std::move(memory)),
      arena_(client_internal::NewBatchArena()),
      request_(google::protobuf::Arena::CreateMessage<v1::Request>(arena_.get())) {
  request_->mutable_batch();
}

absl::Status Batch::AnotherSession() {
  return ErrorStatus(v1::FAILED_PRECONDITION,
                     "call: the function belongs to another session than the batch");
}

absl::Status Batch::InBatchAt(const absl::Status& status, size_t index) {
  return InBatch(status, static_cast<int>(index));
}

void Batch::SetTimeout(absl::Duration timeout) {
  request_->mutable_batch()->set_timeout_ms(TimeoutMillis(timeout));
}

absl::Status Batch::Run() {
  if (ran_) return ErrorStatus(v1::FAILED_PRECONDITION, "the batch has already run");
  ran_ = true;
  if (!refusal_.ok()) return outcome_ = refusal_;
  absl::StatusOr<v1::Response> response = stream_->Exchange(request_);
  if (!response.ok()) return outcome_ = response.status();
  response_ = *std::move(response);
  return outcome_ = Accept(response_);
}

absl::Status Batch::Accept(const v1::Response& response) {
  const v1::BatchResult& batch = response.batch();
  const size_t results = static_cast<size_t>(batch.results_size());
  const bool failed_call = response.has_error() && response.error().has_batch_index();
  // A result for every call; or, when a call failed in the worker, for the calls before it;
  // none when the server refused the batch or it failed as a whole.
  const size_t expected = !response.has_error()                 ? calls_
                          : failed_call && response.has_batch() ? response.error().batch_index()
                                                                : 0;
  if (results != expected || (failed_call && response.error().batch_index() >= calls_) ||
      (!response.has_error() && !response.has_batch())) {
    return ErrorStatus(v1::INTERNAL, absl::StrCat("the server answered a batch of ", calls_,
                                                  " calls with ", results, " results"));
  }
  auto copy_back = copy_backs_.begin();
  for (size_t i = 0; i < results; ++i) {
    const v1::CallResult& result = batch.results(static_cast<int>(i));
    if (copy_back != copy_backs_.end() && copy_back->first == i) {
      absl::Status applied = copy_back->second.ApplyBlocks(result, response.generation());
      if (!applied.ok()) return InBatchAt(applied, i);
      ++copy_back;
    } else if (result.blocks_size() > 0) {
      return InBatchAt(
          ErrorStatus(v1::INTERNAL, "the server returned blocks the call did not send"), i);
    }
    accepted_ = i + 1;
  }
  if (!response.has_error()) return absl::OkStatus();
  const absl::Status failure = ErrorStatus(response.error());
  if (!failed_call) return failure;
  const size_t index = response.error().batch_index();
  const auto named = std::find_if(pipelined_.begin(), pipelined_.end(),
                                  [&](const auto& call) { return call.first == index; });
  if (named == pipelined_.end()) return failure;
  const absl::Status explained = named->second->Explain(failure);
  return explained == failure ? failure : InBatchAt(explained, index);
}

absl::StatusOr<const v1::CallResult*> Batch::CallResultAt(size_t index) const {
  if (!ran_) return ErrorStatus(v1::FAILED_PRECONDITION, "the batch has not run");
  if (index < accepted_) return &response_.batch().results(static_cast<int>(index));
  const v1::Error failure = ToProtoError(outcome_);
  if (!failure.has_batch_index() || failure.batch_index() == index) return outcome_;
  return ErrorStatus(v1::FAILED_PRECONDITION,
                     absl::StrCat("batch.calls[", index, "] did not run: ", failure.message()));
}

}  // namespace ffibox
