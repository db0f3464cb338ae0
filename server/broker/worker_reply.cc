#include "server/broker/worker_reply.h"

#include <climits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/layout.h"
#include "core/malloc_tuning.h"
#include "core/piece_stream.h"
#include "core/status_macros.h"

namespace ffibox {
namespace {

// A read_memory result: raw bytes of the requested size, or a typed value whose raw form
// (records, arrays) has the type's size.
absl::Status CheckMemoryData(const v1::MemoryData& memory, const PendingRequest& expected) {
  return CheckReadResult(memory, expected.read_size, expected.read_typed);
}

// A batch's results: one per call that ran, each as CheckCallResult checks a call's; all of
// them unless `failed`, in which case the error names the call after the last result.
absl::Status CheckBatchResult(const v1::BatchResult& batch, const v1::Error* failed,
                              const PendingRequest& expected) {
  const size_t results = static_cast<size_t>(batch.results_size());
  if (failed == nullptr ? results != expected.batch_calls : results >= expected.batch_calls) {
    return absl::InvalidArgumentError(
        absl::StrCat("the batch reply carries ", results, " results for ", expected.batch_calls,
                     failed == nullptr ? " calls" : " calls, one of which failed"));
  }
  if (failed != nullptr && failed->batch_index() != results) {
    return absl::InvalidArgumentError(absl::StrCat("the batch reply's error names call ",
                                                   failed->batch_index(), " after ", results,
                                                   " results"));
  }
  static const ExpectedCallResult kNoBlocks;
  auto with_blocks = expected.batch_blocks.begin();
  for (size_t i = 0; i < results; ++i) {
    const ExpectedCallResult* call = &kNoBlocks;
    if (with_blocks != expected.batch_blocks.end() && with_blocks->first == i) {
      call = &with_blocks->second;
      ++with_blocks;
    }
    absl::Status checked = CheckCallResult(batch.results(static_cast<int>(i)), *call);
    if (!checked.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("batch result ", i, ": ", checked.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckFrameKinds(const internal::WorkerReply& reply) {
  const int kinds = (reply.has_response() ? 1 : 0) + (reply.has_invoke() ? 1 : 0) +
                    (reply.has_event() ? 1 : 0) + (reply.started() ? 1 : 0);
  if (kinds != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("a worker frame must carry exactly one of response, invoke, event and "
                     "started; this one carries ",
                     kinds));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<internal::WorkerReply> ParseWorkerFrame(absl::string_view frame) {
  internal::WorkerReply reply;
  if (frame.size() > INT_MAX ||
      !reply.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
    return absl::InvalidArgumentError("unparseable reply frame");
  }
  FFIBOX_RETURN_IF_ERROR(CheckFrameKinds(reply));
  return reply;
}

absl::StatusOr<internal::WorkerReply> ParseWorkerFrame(FramePayload frame,
                                                       absl::FunctionRef<AnswerLimits()> limits) {
  std::vector<absl::string_view> views = frame.Views();
  absl::Status shape = CheckAnswerShape(views, internal::WorkerReply::descriptor(), limits);
  if (!shape.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("a reply frame that ", shape.message()));
  }
  internal::WorkerReply reply;
  FreedPiecesReturner returner(frame.size());
  if (!ParseFromPieces(
          std::move(views),
          [&frame, &returner](size_t i) {
            const size_t bytes = frame.pieces[i].size();
            std::string().swap(frame.pieces[i]);
            returner.Freed(bytes);
          },
          &reply)) {
    return absl::InvalidArgumentError("unparseable reply frame");
  }
  FFIBOX_RETURN_IF_ERROR(CheckFrameKinds(reply));
  return reply;
}

absl::StatusOr<v1::Response> CheckWorkerResponse(v1::Response response,
                                                 const PendingRequest& expected) {
  if (response.id() != expected.sequence) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reply for request ", response.id(), " while request ", expected.sequence, " was running"));
  }
  // A worker answering a call at length spends the broker's and the client's memory: no
  // honest answer is longer than its bound.
  if (expected.answer_bytes != 0) {
    if (const uint64_t bytes = response.ByteSizeLong(); bytes > expected.answer_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("an answer of ", bytes,
                                                     " bytes to a call whose answer takes at most ",
                                                     expected.answer_bytes));
    }
  }
  if (response.has_error()) {
    absl::Status code = CheckWorkerError(response.error());
    if (!code.ok()) return absl::InvalidArgumentError(absl::StrCat("reply has ", code.message()));
    // Only a batch answers an error with a result: the results of the calls before the
    // failing one, whose index the error names.
    if (expected.op == v1::Request::kBatch && response.has_batch()) {
      absl::Status batch = CheckBatchResult(response.batch(), &response.error(), expected);
      if (!batch.ok()) return batch;
    } else if (response.result_case() != v1::Response::RESULT_NOT_SET) {
      return absl::InvalidArgumentError("reply carries both an error and a result");
    } else if (response.error().has_batch_index()) {
      return absl::InvalidArgumentError("an error without batch results names a batch call");
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
    if (want == v1::Response::kCallback && response.callback().callback() != expected.handle) {
      return absl::InvalidArgumentError("reply names another callback handle");
    }
    if (want == v1::Response::kMemory) {
      absl::Status memory = CheckMemoryData(response.memory(), expected);
      if (!memory.ok()) return memory;
    }
    if (want == v1::Response::kMemoryList) {
      absl::Status list = CheckReadListResult(response.memory_list(), expected.read_list);
      if (!list.ok()) return list;
    }
    if (want == v1::Response::kCall) {
      absl::Status call = CheckCallResult(response.call(), expected.call);
      if (!call.ok()) return call;
    }
    if (want == v1::Response::kBatch) {
      absl::Status batch = CheckBatchResult(response.batch(), nullptr, expected);
      if (!batch.ok()) return batch;
    }
  }
  response.set_id(expected.client_id);
  return response;
}

absl::Status CheckWorkerEvent(const v1::SessionEvent& event) {
  if (event.kind() != v1::SessionEvent::CALLBACK_ERROR) {
    return absl::InvalidArgumentError(
        absl::StrCat("the worker may only send CALLBACK_ERROR events, not kind ", event.kind()));
  }
  absl::Status code = CheckWorkerError(event.error());
  if (!code.ok()) return absl::InvalidArgumentError(absl::StrCat("event has ", code.message()));
  // A callback error says which callback failed and why: a few lines. A huge one is a
  // worker spending the broker's memory (the event is relayed to the client whole).
  if (event.ByteSizeLong() > kMaxWorkerEventBytes) {
    return absl::InvalidArgumentError(absl::StrCat("an event of ", event.ByteSizeLong(),
                                                   " bytes (at most ", kMaxWorkerEventBytes, ")"));
  }
  return absl::OkStatus();
}

}  // namespace ffibox
