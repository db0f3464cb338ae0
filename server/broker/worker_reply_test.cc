#include "server/broker/worker_reply.h"

#include <string>
#include <utility>
#include <vector>

#include "core/call_answer.h"
#include "core/call_shape.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/protocol/worker_protocol.pb.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kSequence = 41;
constexpr uint64_t kClientId = 7;

PendingRequest Pending(v1::Request::OpCase op, uint64_t handle = 0) {
  PendingRequest pending;
  pending.sequence = kSequence;
  pending.client_id = kClientId;
  pending.op = op;
  pending.handle = handle;
  pending.label = "test";
  return pending;
}

// A call that sent [OUT 4 bytes, IN 8 bytes, INOUT 2 bytes, OUT 0 bytes].
PendingRequest PendingCall() {
  PendingRequest pending = Pending(v1::Request::kCall);
  pending.call.returned_block_sizes = {4, PendingRequest::kNotReturned, 2, 0};
  return pending;
}

std::string Frame(const v1::Response& response) {
  internal::WorkerReply reply;
  *reply.mutable_response() = response;
  return reply.SerializeAsString();
}

v1::Response CallReply(uint64_t id = kSequence) {
  v1::Response response;
  response.set_id(id);
  response.mutable_call()->mutable_result()->set_int_value(3);
  return response;
}

void AddBlock(v1::Response* response, uint32_t index, std::string data) {
  v1::BlockContents* block = response->mutable_call()->add_blocks();
  block->set_block(index);
  block->set_data(std::move(data));
}

// What the broker does with a frame it expects to answer `pending`: the envelope, then the
// response against the request.
absl::StatusOr<v1::Response> ParseWorkerReply(const std::string& frame,
                                              const PendingRequest& pending) {
  absl::StatusOr<internal::WorkerReply> reply = ParseWorkerFrame(frame);
  if (!reply.ok()) return reply.status();
  if (!reply->has_response()) return absl::InvalidArgumentError("not a response");
  return CheckWorkerResponse(std::move(*reply->mutable_response()), pending);
}

void ExpectRefused(const std::string& frame, const PendingRequest& pending) {
  absl::StatusOr<v1::Response> parsed = ParseWorkerReply(frame, pending);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << parsed.status();
}

TEST(ParseWorkerReply, GarbageBytesAreRefused) {
  ExpectRefused(std::string("\xff\xff\xff\xff\x0f garbage", 13), PendingCall());
}

TEST(ParseWorkerReply, TruncatedFrameIsRefused) {
  std::string frame = Frame(CallReply());
  ExpectRefused(frame.substr(0, frame.size() - 1), PendingCall());
}

TEST(ParseWorkerReply, ReplyForAnotherSequenceIdIsRefused) {
  ExpectRefused(Frame(CallReply(kSequence + 1)), PendingCall());
  // The client's own id is not the sequence id either.
  ExpectRefused(Frame(CallReply(kClientId)), PendingCall());
}

TEST(ParseWorkerReply, ErrorWithCodeZeroIsRefused) {
  v1::Response response;
  response.set_id(kSequence);
  response.mutable_error()->set_message("no code");
  ExpectRefused(Frame(response), PendingCall());
}

TEST(ParseWorkerReply, ErrorWithOutOfRangeCodeIsRefused) {
  v1::Response response;
  response.set_id(kSequence);
  response.mutable_error()->set_code(static_cast<v1::ErrorCode>(9999));
  ExpectRefused(Frame(response), PendingCall());
  response.mutable_error()->set_code(static_cast<v1::ErrorCode>(-1));
  ExpectRefused(Frame(response), PendingCall());
}

TEST(ParseWorkerReply, ErrorTogetherWithResultIsRefused) {
  v1::Response response = CallReply();
  response.mutable_error()->set_code(v1::INTERNAL);
  ExpectRefused(Frame(response), PendingCall());
}

TEST(ParseWorkerReply, WrongResultKindForTheOperationIsRefused) {
  v1::Response layout;
  layout.set_id(kSequence);
  layout.mutable_layout()->set_size(8);
  ExpectRefused(Frame(layout), PendingCall());
  ExpectRefused(Frame(CallReply()), Pending(v1::Request::kGetLayout));
  v1::Response nothing;
  nothing.set_id(kSequence);
  ExpectRefused(Frame(nothing), PendingCall());
  v1::Response event;
  event.set_id(kSequence);
  event.mutable_event()->set_kind(v1::SessionEvent::WORKER_LOST);
  ExpectRefused(Frame(event), Pending(v1::Request::kPing));
}

TEST(ParseWorkerReply, WrongLibraryHandleIsRefused) {
  v1::Response response;
  response.set_id(kSequence);
  response.mutable_library()->set_library(3);
  ExpectRefused(Frame(response), Pending(v1::Request::kLoadLibrary, 2));
}

TEST(ParseWorkerReply, WrongFunctionHandleIsRefused) {
  v1::Response response;
  response.set_id(kSequence);
  response.mutable_function()->set_function(5);
  ExpectRefused(Frame(response), Pending(v1::Request::kResolveFunction, 4));
}

TEST(ParseWorkerReply, ReturnedBlockIndexOutOfRangeIsRefused) {
  v1::Response response = CallReply();
  AddBlock(&response, 4, "");
  ExpectRefused(Frame(response), PendingCall());
  v1::Response huge = CallReply();
  AddBlock(&huge, 0xffffffffu, "");
  ExpectRefused(Frame(huge), PendingCall());
}

TEST(ParseWorkerReply, DuplicateReturnedBlockIsRefused) {
  v1::Response response = CallReply();
  AddBlock(&response, 0, "abcd");
  AddBlock(&response, 0, "abcd");
  ExpectRefused(Frame(response), PendingCall());
}

TEST(ParseWorkerReply, BlockReturnedForAnInBlockIsRefused) {
  v1::Response response = CallReply();
  AddBlock(&response, 1, std::string(8, 'x'));
  ExpectRefused(Frame(response), PendingCall());
}

TEST(ParseWorkerReply, ReturnedBlockOfTheWrongSizeIsRefused) {
  v1::Response longer = CallReply();
  AddBlock(&longer, 0, "abcde");
  ExpectRefused(Frame(longer), PendingCall());
  v1::Response shorter = CallReply();
  AddBlock(&shorter, 2, "a");
  ExpectRefused(Frame(shorter), PendingCall());
}

TEST(ParseWorkerReply, GoodCallResultIsAcceptedWithTheClientIdRestored) {
  v1::Response response = CallReply();
  AddBlock(&response, 2, "hi");
  AddBlock(&response, 0, "abcd");
  absl::StatusOr<v1::Response> parsed = ParseWorkerReply(Frame(response), PendingCall());
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->id(), kClientId);
  EXPECT_EQ(parsed->call().result().int_value(), 3);
  ASSERT_EQ(parsed->call().blocks_size(), 2);
  EXPECT_EQ(parsed->call().blocks(0).data(), "hi");
  EXPECT_EQ(parsed->call().blocks(1).data(), "abcd");
}

// The call kept blocks 0 and 2.
PendingRequest PendingKeepingCall() {
  PendingRequest pending = PendingCall();
  pending.call.kept_blocks = {0, 2};
  return pending;
}

v1::Response KeptReply(std::vector<std::pair<uint32_t, uint64_t>> kept) {
  v1::Response response = CallReply();
  AddBlock(&response, 0, "abcd");
  AddBlock(&response, 2, "hi");
  for (const auto& [block, address] : kept) {
    v1::KeptBlock* entry = response.mutable_call()->add_kept();
    entry->set_block(block);
    entry->mutable_address()->set_address(address);
  }
  return response;
}

TEST(ParseWorkerReply, KeptBlocksMustBeReportedOnceEachInOrder) {
  absl::StatusOr<v1::Response> good =
      ParseWorkerReply(Frame(KeptReply({{0, 0x1000}, {2, 0x2000}})), PendingKeepingCall());
  ASSERT_OK(good);
  EXPECT_EQ(good->call().kept_size(), 2);
  ExpectRefused(Frame(KeptReply({{0, 0x1000}})), PendingKeepingCall());               // missing
  ExpectRefused(Frame(KeptReply({{2, 0x2000}, {0, 0x1000}})), PendingKeepingCall());  // order
  ExpectRefused(Frame(KeptReply({{0, 0x1000}, {1, 0x2000}})), PendingKeepingCall());  // not kept
  ExpectRefused(Frame(KeptReply({{0, 0x1000}, {2, 0}})), PendingKeepingCall());       // NULL
  ExpectRefused(Frame(KeptReply({{0, 0x1000}, {2, 0x2000}, {2, 0x3000}})),
                PendingKeepingCall());                            // extra
  ExpectRefused(Frame(KeptReply({{0, 0x1000}})), PendingCall());  // nothing was kept
}

TEST(ParseWorkerReply, ChangedBlocksAreNonEmptyAtNonZeroAddressesWithinTheWatchBudget) {
  auto reply = [](std::vector<std::pair<uint64_t, std::string>> changed) {
    v1::Response response = KeptReply({{0, 0x1000}, {2, 0x2000}});
    for (auto& [address, data] : changed) {
      v1::ChangedBlock* entry = response.mutable_call()->add_changed();
      entry->mutable_address()->set_address(address);
      entry->set_data(std::move(data));
    }
    return response;
  };
  absl::StatusOr<v1::Response> good =
      ParseWorkerReply(Frame(reply({{0x3000, "now"}, {0x4000, "then"}})), PendingKeepingCall());
  ASSERT_OK(good);
  ASSERT_EQ(good->call().changed_size(), 2);
  EXPECT_EQ(good->call().changed(1).data(), "then");
  ExpectRefused(Frame(reply({{0, "now"}})), PendingKeepingCall());
  ExpectRefused(Frame(reply({{0x3000, ""}})), PendingKeepingCall());
  const std::string half(kMaxChangedBytes / 2, 'x');  // the blocks' and the reads' budgets
  ASSERT_OK(ParseWorkerReply(Frame(reply({{0x3000, half}, {0x4000, half}})), PendingKeepingCall()));
  ExpectRefused(Frame(reply({{0x3000, half}, {0x4000, half + "x"}})), PendingKeepingCall());
}

TEST(ParseWorkerReply, ErrorCodesOnlyTheBrokerReportsAreRefused) {
  // And UNAVAILABLE, which only clients use.
  for (v1::ErrorCode code :
       {v1::WORKER_CRASHED, v1::SANDBOX_VIOLATION, v1::JAIL_UNAVAILABLE, v1::UNAVAILABLE}) {
    v1::Response response;
    response.set_id(kSequence);
    response.mutable_error()->set_code(code);
    response.mutable_error()->set_message("forged");
    ExpectRefused(Frame(response), PendingCall());
  }
}

TEST(ParseWorkerReply, GoodErrorReplyIsAccepted) {
  v1::Response response;
  response.set_id(kSequence);
  response.mutable_error()->set_code(v1::SYMBOL_NOT_FOUND);
  response.mutable_error()->set_message("symbol nope not found");
  absl::StatusOr<v1::Response> parsed =
      ParseWorkerReply(Frame(response), Pending(v1::Request::kResolveFunction, 4));
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->id(), kClientId);
  EXPECT_EQ(parsed->error().code(), v1::SYMBOL_NOT_FOUND);
  EXPECT_EQ(parsed->result_case(), v1::Response::RESULT_NOT_SET);
}

TEST(ParseWorkerReply, ZeroSizeOutBlockReturnedEmptyIsAccepted) {
  v1::Response response = CallReply();
  AddBlock(&response, 3, "");
  absl::StatusOr<v1::Response> parsed = ParseWorkerReply(Frame(response), PendingCall());
  ASSERT_OK(parsed);
  ASSERT_EQ(parsed->call().blocks_size(), 1);
  EXPECT_EQ(parsed->call().blocks(0).block(), 3u);
  EXPECT_TRUE(parsed->call().blocks(0).data().empty());
}

TEST(ParseWorkerReply, GoodLoadAndResolveRepliesAreAccepted) {
  v1::Response loaded;
  loaded.set_id(kSequence);
  loaded.mutable_library()->set_library(2);
  absl::StatusOr<v1::Response> parsed =
      ParseWorkerReply(Frame(loaded), Pending(v1::Request::kLoadLibrary, 2));
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->library().library(), 2u);

  v1::Response resolved;
  resolved.set_id(kSequence);
  resolved.mutable_function()->set_function(4);
  parsed = ParseWorkerReply(Frame(resolved), Pending(v1::Request::kResolveFunction, 4));
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->function().function(), 4u);
}

// PendingCall with every block's size known, as the session records it.
PendingRequest PendingCallWithSizes() {
  PendingRequest pending = PendingCall();
  pending.call.returned_block_sizes = {16, PendingRequest::kNotReturned, 2, 0};
  pending.call.block_sizes = {16, 8, 2, 0};
  return pending;
}

v1::Response CallReplyWithPointer(uint64_t offset, uint32_t target_block, uint64_t target_offset) {
  v1::Response response = CallReply();
  AddBlock(&response, 0, std::string(16, 'x'));
  v1::Relocation* pointer = response.mutable_call()->mutable_blocks(0)->add_pointers();
  pointer->set_offset(offset);
  pointer->mutable_target()->set_block(target_block);
  pointer->mutable_target()->set_offset(target_offset);
  return response;
}

TEST(ParseWorkerReply, ReportedPointersInsideTheCallsBlocksAreAccepted) {
  EXPECT_TRUE(ParseWorkerReply(Frame(CallReplyWithPointer(8, 1, 8)), PendingCallWithSizes()).ok());
  EXPECT_TRUE(ParseWorkerReply(Frame(CallReplyWithPointer(0, 3, 0)), PendingCallWithSizes()).ok());
}

TEST(ParseWorkerReply, ReportedPointersOutsideTheirBlockOrTargetAreRefused) {
  ExpectRefused(Frame(CallReplyWithPointer(12, 1, 0)), PendingCallWithSizes());  // unaligned
  ExpectRefused(Frame(CallReplyWithPointer(16, 1, 0)), PendingCallWithSizes());  // past the end
  ExpectRefused(Frame(CallReplyWithPointer(~uint64_t{7}, 1, 0)), PendingCallWithSizes());
  ExpectRefused(Frame(CallReplyWithPointer(0, 4, 0)), PendingCallWithSizes());  // no block 4
  ExpectRefused(Frame(CallReplyWithPointer(0, 1, 9)), PendingCallWithSizes());  // past block 1
  v1::Response twice = CallReplyWithPointer(8, 1, 0);
  *twice.mutable_call()->mutable_blocks(0)->add_pointers() =
      twice.call().blocks(0).pointers(0);  // the same offset again
  ExpectRefused(Frame(twice), PendingCallWithSizes());
}

TEST(ParseWorkerReply, TypedReadMustCarryAValueAndNoData) {
  PendingRequest pending = Pending(v1::Request::kReadMemory);
  pending.read_typed = true;
  pending.read_size = 12;
  v1::Response response;
  response.set_id(kSequence);
  response.mutable_memory()->mutable_value()->set_int_value(4);
  EXPECT_TRUE(ParseWorkerReply(Frame(response), pending).ok());
  response.mutable_memory()->mutable_value()->set_raw(std::string(12, 'r'));
  EXPECT_TRUE(ParseWorkerReply(Frame(response), pending).ok());
  response.mutable_memory()->mutable_value()->set_raw(std::string(13, 'r'));
  ExpectRefused(Frame(response), pending);
  response.mutable_memory()->mutable_value()->set_int_value(4);
  response.mutable_memory()->set_data("x");
  ExpectRefused(Frame(response), pending);
  response.mutable_memory()->clear_data();
  response.mutable_memory()->clear_value();
  ExpectRefused(Frame(response), pending);

  PendingRequest untyped = Pending(v1::Request::kReadMemory);
  untyped.read_size = 1;
  response.mutable_memory()->set_data("x");
  EXPECT_TRUE(ParseWorkerReply(Frame(response), untyped).ok());
  response.mutable_memory()->mutable_value()->set_int_value(1);
  ExpectRefused(Frame(response), untyped);
}

TEST(ParseWorkerReply, AReadListCarriesOneReadOfTheAskedSizePerRead) {
  PendingRequest pending = Pending(v1::Request::kReadMemoryList);
  pending.read_list = {{2, false}, {3, false}};
  pending.answer_limits.memory_reads = 2;
  v1::Response response;
  response.set_id(kSequence);
  response.mutable_memory_list()->add_reads()->set_data("ab");
  response.mutable_memory_list()->add_reads()->set_data("cde");
  EXPECT_TRUE(ParseWorkerReply(Frame(response), pending).ok());
  response.mutable_memory_list()->mutable_reads(1)->set_data("cdef");
  ExpectRefused(Frame(response), pending);
  response.mutable_memory_list()->mutable_reads(1)->set_data("cde");
  response.mutable_memory_list()->add_reads()->set_data("");
  ExpectRefused(Frame(response), pending);
  // Reads past what the request allows are refused before the answer is parsed.
  v1::Response flood;
  flood.set_id(kSequence);
  for (int i = 0; i < 40000; ++i) flood.mutable_memory_list()->add_reads()->set_data("ab");
  ExpectRefused(Frame(flood), pending);
}

// A batch of 3 calls whose call 1 sent [OUT 4 bytes] and kept it; calls 0 and 2 sent no
// blocks.
PendingRequest PendingBatch() {
  PendingRequest pending = Pending(v1::Request::kBatch);
  pending.batch_calls = 3;
  ExpectedCallResult with_block;
  with_block.returned_block_sizes = {4};
  with_block.block_sizes = {4};
  with_block.kept_blocks = {0};
  pending.batch_blocks.emplace_back(1, with_block);
  return pending;
}

// The honest result of call `index` of PendingBatch.
v1::CallResult BatchCallResult(int index) {
  v1::CallResult result;
  result.mutable_result()->set_int_value(index);
  if (index == 1) {
    v1::BlockContents* block = result.add_blocks();
    block->set_block(0);
    block->set_data("abcd");
    v1::KeptBlock* kept = result.add_kept();
    kept->set_block(0);
    kept->mutable_address()->set_address(0x1000);
  }
  return result;
}

// A batch reply with the honest results of the first `results` calls.
v1::Response BatchReply(int results) {
  v1::Response response;
  response.set_id(kSequence);
  response.mutable_batch();
  for (int i = 0; i < results; ++i) *response.mutable_batch()->add_results() = BatchCallResult(i);
  return response;
}

// BatchReply(results) reporting that call `results` failed.
v1::Response FailedBatchReply(int results) {
  v1::Response response = BatchReply(results);
  response.mutable_error()->set_code(v1::MEMORY_FAULT);
  response.mutable_error()->set_message("batch.calls[n]: unreadable");
  response.mutable_error()->set_batch_index(static_cast<uint32_t>(results));
  return response;
}

TEST(ParseWorkerReply, GoodBatchRepliesAreAccepted) {
  absl::StatusOr<v1::Response> parsed = ParseWorkerReply(Frame(BatchReply(3)), PendingBatch());
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->id(), kClientId);
  ASSERT_EQ(parsed->batch().results_size(), 3);
  EXPECT_EQ(parsed->batch().results(1).blocks(0).data(), "abcd");
  for (int failed = 0; failed < 3; ++failed) {
    parsed = ParseWorkerReply(Frame(FailedBatchReply(failed)), PendingBatch());
    ASSERT_OK(parsed);
    EXPECT_EQ(parsed->error().batch_index(), static_cast<uint32_t>(failed));
    EXPECT_EQ(parsed->batch().results_size(), failed);
  }
  // A failure of the batch as a whole (no call named, nothing ran).
  v1::Response whole;
  whole.set_id(kSequence);
  whole.mutable_error()->set_code(v1::RESOURCE_EXHAUSTED);
  ASSERT_OK(ParseWorkerReply(Frame(whole), PendingBatch()));
}

TEST(ParseWorkerReply, BatchWithMoreOrFewerResultsThanCallsIsRefused) {
  ExpectRefused(Frame(BatchReply(2)), PendingBatch());  // a call's result is missing
  v1::Response more = BatchReply(3);
  *more.mutable_batch()->add_results() = BatchCallResult(0);
  ExpectRefused(Frame(more), PendingBatch());
  v1::Response none;
  none.set_id(kSequence);
  ExpectRefused(Frame(none), PendingBatch());
  // A batch result answers a batch only, and a batch is answered by nothing else.
  ExpectRefused(Frame(BatchReply(3)), PendingCall());
  ExpectRefused(Frame(CallReply()), PendingBatch());
}

TEST(ParseWorkerReply, FailedBatchMustNameTheCallAfterItsLastResult) {
  // Results for the failing call or after it: a result for a call that should have none.
  v1::Response all = FailedBatchReply(3);
  all.mutable_error()->set_batch_index(2);
  ExpectRefused(Frame(all), PendingBatch());
  v1::Response beyond = FailedBatchReply(3);
  ExpectRefused(Frame(beyond), PendingBatch());
  // The index disagrees with the results.
  v1::Response early = FailedBatchReply(2);
  early.mutable_error()->set_batch_index(0);
  ExpectRefused(Frame(early), PendingBatch());
  v1::Response late = FailedBatchReply(1);
  late.mutable_error()->set_batch_index(2);
  ExpectRefused(Frame(late), PendingBatch());
  v1::Response unnamed = FailedBatchReply(2);
  unnamed.mutable_error()->clear_batch_index();
  ExpectRefused(Frame(unnamed), PendingBatch());
  // A batch index without results, and on a reply to a single call.
  v1::Response no_results;
  no_results.set_id(kSequence);
  no_results.mutable_error()->set_code(v1::MEMORY_FAULT);
  no_results.mutable_error()->set_batch_index(1);
  ExpectRefused(Frame(no_results), PendingBatch());
  ExpectRefused(Frame(no_results), PendingCall());
  // Forged broker verdicts stay forged inside a batch.
  v1::Response crashed = FailedBatchReply(1);
  crashed.mutable_error()->set_code(v1::WORKER_CRASHED);
  ExpectRefused(Frame(crashed), PendingBatch());
  v1::Response unreached = FailedBatchReply(1);
  unreached.mutable_error()->set_never_reached_worker(true);
  ExpectRefused(Frame(unreached), PendingBatch());
}

TEST(ParseWorkerReply, OnlyTheBrokerSaysARequestNeverReachedAWorker) {
  // A client sends the releases of such a call again: a worker that claims it would have
  // them freed twice.
  v1::Response failed;
  failed.set_id(kSequence);
  failed.mutable_error()->set_code(v1::MEMORY_FAULT);
  ASSERT_OK(ParseWorkerReply(Frame(failed), PendingCall()));
  failed.mutable_error()->set_never_reached_worker(true);
  ExpectRefused(Frame(failed), PendingCall());
}

TEST(ParseWorkerReply, EachBatchResultIsCheckedAgainstItsOwnCallsBlocks) {
  // Call 0 sent no blocks: it may return none and keep none.
  v1::Response block_for_blockless = BatchReply(3);
  v1::BlockContents* stray = block_for_blockless.mutable_batch()->mutable_results(0)->add_blocks();
  stray->set_block(0);
  stray->set_data("abcd");
  ExpectRefused(Frame(block_for_blockless), PendingBatch());
  v1::Response kept_for_blockless = BatchReply(3);
  *kept_for_blockless.mutable_batch()->mutable_results(2)->add_kept() = BatchCallResult(1).kept(0);
  ExpectRefused(Frame(kept_for_blockless), PendingBatch());
  // Call 1's block must come back with its size, and its kept block be reported.
  v1::Response wrong_size = BatchReply(3);
  wrong_size.mutable_batch()->mutable_results(1)->mutable_blocks(0)->set_data("abcde");
  ExpectRefused(Frame(wrong_size), PendingBatch());
  v1::Response not_kept = BatchReply(3);
  not_kept.mutable_batch()->mutable_results(1)->clear_kept();
  ExpectRefused(Frame(not_kept), PendingBatch());
  // The same holds for the results before a failing call.
  v1::Response failed = FailedBatchReply(2);
  failed.mutable_batch()->mutable_results(1)->clear_kept();
  ExpectRefused(Frame(failed), PendingBatch());
}

// void (*)(int, struct { int x, y; }*)
v1::Signature PointCallbackSignature() {
  v1::Signature signature;
  signature.add_params()->set_scalar(v1::INT);
  v1::RecordType* point =
      signature.add_params()->mutable_pointer()->mutable_pointee()->mutable_record();
  point->set_kind(v1::RecordType::STRUCT);
  point->add_fields()->mutable_type()->set_scalar(v1::INT);
  point->add_fields()->mutable_type()->set_scalar(v1::INT);
  return signature;
}

v1::CallbackInvoke PointInvoke() {
  v1::CallbackInvoke invoke;
  invoke.set_invocation(9);
  invoke.set_callback(1);
  invoke.add_args()->set_int_value(3);
  invoke.add_args()->mutable_pointer()->mutable_remote()->set_address(0x5000);
  v1::PointeeData* pointee = invoke.add_pointees();
  pointee->set_arg(1);
  pointee->set_data(std::string(8, '\0'));
  return invoke;
}

// `bytes` in pieces of 1 MiB: a few MiB make several, whose boundaries the parse crosses.
FramePayload InPieces(const std::string& bytes) {
  constexpr size_t kPieceBytes = size_t{1} << 20;
  FramePayload frame;
  for (size_t at = 0; at < bytes.size(); at += kPieceBytes) {
    frame.pieces.push_back(bytes.substr(at, kPieceBytes));
  }
  return frame;
}

AnswerLimits OneBlock() {
  AnswerLimits limits;
  limits.blocks = 1;
  return limits;
}

TEST(ParseWorkerFrame, AFrameInPiecesParsesAsWholeAndIsCheckedTheSame) {
  internal::WorkerReply reply;
  reply.mutable_response()->set_id(3);
  reply.mutable_response()->mutable_call()->add_blocks()->set_data(std::string(3 << 20, 'd'));
  const std::string wire = reply.SerializeAsString();
  absl::StatusOr<internal::WorkerReply> parsed = ParseWorkerFrame(InPieces(wire), OneBlock);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->SerializeAsString(), wire);

  std::string cut = wire;
  cut.resize(wire.size() - 1);
  EXPECT_EQ(ParseWorkerFrame(InPieces(cut), OneBlock).status().code(),
            absl::StatusCode::kInvalidArgument);
  reply.mutable_event();
  EXPECT_EQ(ParseWorkerFrame(InPieces(reply.SerializeAsString()), OneBlock).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseWorkerFrame, ALargeFrameHoldingMoreThanTheRequestsInFlightAllowIsNotParsed) {
  internal::WorkerReply reply;
  reply.mutable_response()->set_id(3);
  v1::CallResult* call = reply.mutable_response()->mutable_call();
  call->add_blocks()->set_data(std::string(1 << 20, 'd'));
  // Empty blocks: two bytes each on the wire, an object each once parsed.
  for (int i = 0; i < 100000; ++i) call->add_blocks();
  int asked = 0;
  absl::StatusOr<internal::WorkerReply> parsed =
      ParseWorkerFrame(InPieces(reply.SerializeAsString()), [&asked] {
        ++asked;
        return OneBlock();
      });
  EXPECT_EQ(asked, 1);
  ASSERT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("holds more ffibox.v1.CallResult.blocks"),
            std::string::npos)
      << parsed.status();
  // A small frame is parsed without asking: its content checks refuse it later.
  internal::WorkerReply small;
  small.mutable_response()->mutable_call()->add_blocks();
  small.mutable_response()->mutable_call()->add_blocks();
  EXPECT_TRUE(ParseWorkerFrame(InPieces(small.SerializeAsString()), [&asked] {
                ++asked;
                return AnswerLimits();
              }).ok());
  EXPECT_EQ(asked, 1);
}

TEST(ParseWorkerFrame, FrameMustCarryExactlyOneKind) {
  internal::WorkerReply reply;
  EXPECT_EQ(ParseWorkerFrame(reply.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);
  *reply.mutable_response() = CallReply();
  *reply.mutable_invoke() = PointInvoke();
  EXPECT_EQ(ParseWorkerFrame(reply.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);
  reply.clear_response();
  EXPECT_TRUE(ParseWorkerFrame(reply.SerializeAsString()).ok());
  // An invoke is no answer to a request.
  ExpectRefused(reply.SerializeAsString(), PendingCall());
}

TEST(CheckCallbackInvoke, WellFormedInvokeReportsItsShippedPointees) {
  std::vector<std::pair<uint32_t, uint64_t>> shipped;
  ASSERT_TRUE(CheckCallbackInvoke(PointInvoke(), PointCallbackSignature(), 0, &shipped).ok());
  ASSERT_EQ(shipped.size(), 1u);
  EXPECT_EQ(shipped[0], std::make_pair(uint32_t{1}, uint64_t{8}));
}

TEST(CheckCallbackInvoke, WrongArgumentCountIsRefused) {
  std::vector<std::pair<uint32_t, uint64_t>> shipped;
  v1::CallbackInvoke invoke = PointInvoke();
  invoke.add_args()->set_int_value(1);
  EXPECT_FALSE(CheckCallbackInvoke(invoke, PointCallbackSignature(), 0, &shipped).ok());
  invoke.mutable_args()->RemoveLast();
  invoke.mutable_args()->RemoveLast();
  EXPECT_FALSE(CheckCallbackInvoke(invoke, PointCallbackSignature(), 0, &shipped).ok());
}

// An argument holds only what the worker sends for its parameter: a forged invoke carried a
// 200 MiB string for a callback whose parameters hold none, which its client kept.
TEST(CheckCallbackInvoke, AnArgumentHoldsOnlyWhatItsParameterCan) {
  std::vector<std::pair<uint32_t, uint64_t>> shipped;
  v1::Signature text;
  text.add_params()->set_scalar(v1::CSTRING);
  text.add_params()->set_scalar(v1::WSTRING);
  text.add_params()->mutable_record()->add_fields()->mutable_type()->set_scalar(v1::INT);
  text.mutable_params(2)->mutable_record()->set_kind(v1::RecordType::STRUCT);
  v1::CallbackInvoke invoke;
  invoke.set_invocation(9);
  invoke.add_args()->set_bytes_value(std::string(kMaxInvokeStringBytes, 'x'));
  invoke.add_args()->set_text_value(std::string(4 * kMaxInvokeStringBytes, 'x'));
  invoke.add_args()->set_raw(std::string(4, '\0'));
  EXPECT_OK(CheckCallbackInvoke(invoke, text, 0, &shipped));
  for (int i = 0; i < 3; ++i) {
    v1::CallbackInvoke more = invoke;
    v1::Value* arg = more.mutable_args(i);
    if (i == 0) arg->mutable_bytes_value()->push_back('x');  // past the longest string
    if (i == 1) arg->mutable_text_value()->push_back('x');
    if (i == 2) arg->mutable_raw()->push_back('\0');  // past the record's size
    EXPECT_FALSE(CheckCallbackInvoke(more, text, 0, &shipped).ok()) << i;
  }
  // Text only for a string parameter; an aggregate never (records come as their bytes).
  v1::CallbackInvoke point = PointInvoke();
  point.mutable_args(0)->set_bytes_value("x");
  EXPECT_FALSE(CheckCallbackInvoke(point, PointCallbackSignature(), 0, &shipped).ok());
  point = PointInvoke();
  point.mutable_args(0)->mutable_aggregate();
  EXPECT_FALSE(CheckCallbackInvoke(point, PointCallbackSignature(), 0, &shipped).ok());
}

TEST(CheckCallbackInvoke, PointeeForANonPointerOrOfTheWrongSizeIsRefused) {
  std::vector<std::pair<uint32_t, uint64_t>> shipped;
  v1::CallbackInvoke invoke = PointInvoke();
  invoke.mutable_pointees(0)->set_arg(0);  // the int parameter
  EXPECT_FALSE(CheckCallbackInvoke(invoke, PointCallbackSignature(), 0, &shipped).ok());
  invoke = PointInvoke();
  invoke.mutable_pointees(0)->set_data(std::string(9, 'x'));
  EXPECT_FALSE(CheckCallbackInvoke(invoke, PointCallbackSignature(), 0, &shipped).ok());
  invoke = PointInvoke();
  *invoke.add_pointees() = invoke.pointees(0);  // twice
  EXPECT_FALSE(CheckCallbackInvoke(invoke, PointCallbackSignature(), 0, &shipped).ok());
  invoke = PointInvoke();
  invoke.mutable_pointees(0)->set_arg(7);
  EXPECT_FALSE(CheckCallbackInvoke(invoke, PointCallbackSignature(), 0, &shipped).ok());
  invoke = PointInvoke();
  invoke.set_invocation(0);
  EXPECT_FALSE(CheckCallbackInvoke(invoke, PointCallbackSignature(), 0, &shipped).ok());
}

TEST(CheckCallbackInvoke, BytesAfterAPointeeOnlyAsFarAsTheCallbackAsked) {
  std::vector<std::pair<uint32_t, uint64_t>> shipped;
  v1::CallbackInvoke invoke = PointInvoke();  // an 8-byte pointee
  invoke.mutable_pointees(0)->set_following(std::string(56, 'f'));
  ASSERT_TRUE(CheckCallbackInvoke(invoke, PointCallbackSignature(), 64, &shipped).ok());
  ASSERT_EQ(shipped.size(), 1u);
  EXPECT_EQ(shipped[0], std::make_pair(uint32_t{1}, uint64_t{8}));  // written back: the pointee
  absl::Status status = CheckCallbackInvoke(invoke, PointCallbackSignature(), 63, &shipped);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("asked for 63"));
  // None asked for: none may come, nor when the pointee alone fills what was asked.
  EXPECT_FALSE(CheckCallbackInvoke(invoke, PointCallbackSignature(), 0, &shipped).ok());
  invoke.mutable_pointees(0)->set_following("f");
  EXPECT_FALSE(CheckCallbackInvoke(invoke, PointCallbackSignature(), 8, &shipped).ok());
  EXPECT_FALSE(CheckCallbackInvoke(invoke, PointCallbackSignature(), 4, &shipped).ok());
}

TEST(CheckWorkerEvent, AHugeEventIsRefused) {
  v1::SessionEvent event;
  event.set_kind(v1::SessionEvent::CALLBACK_ERROR);
  event.mutable_error()->set_code(v1::INTERNAL);
  event.mutable_error()->set_message(std::string(1000, 'x'));
  EXPECT_TRUE(CheckWorkerEvent(event).ok());
  event.mutable_error()->set_message(std::string(kMaxWorkerEventBytes, 'x'));
  EXPECT_FALSE(CheckWorkerEvent(event).ok());
}

TEST(CheckWorkerEvent, OnlyCallbackErrorsWithKnownCodesPass) {
  v1::SessionEvent event;
  event.set_kind(v1::SessionEvent::CALLBACK_ERROR);
  event.mutable_error()->set_code(v1::NOT_FOUND);
  EXPECT_TRUE(CheckWorkerEvent(event).ok());
  event.mutable_error()->set_code(static_cast<v1::ErrorCode>(4242));
  EXPECT_FALSE(CheckWorkerEvent(event).ok());
  event.mutable_error()->set_code(v1::NOT_FOUND);
  event.mutable_error()->set_never_reached_worker(true);  // only the broker knows that
  EXPECT_FALSE(CheckWorkerEvent(event).ok());
  event.mutable_error()->clear_never_reached_worker();
  event.mutable_error()->set_code(v1::WORKER_CRASHED);
  event.set_kind(v1::SessionEvent::WORKER_LOST);  // only the broker reports losses
  EXPECT_FALSE(CheckWorkerEvent(event).ok());
}

TEST(ParseWorkerReply, DefineCallbackMustNameTheAssignedHandle) {
  PendingRequest pending = Pending(v1::Request::kDefineCallback, 12);
  v1::Response response;
  response.set_id(kSequence);
  response.mutable_callback()->set_callback(12);
  EXPECT_TRUE(ParseWorkerReply(Frame(response), pending).ok());
  response.mutable_callback()->set_callback(13);
  ExpectRefused(Frame(response), pending);
  response.mutable_done();
  ExpectRefused(Frame(response), pending);
  EXPECT_TRUE(ParseWorkerReply(Frame(response), Pending(v1::Request::kFreeCallback, 12)).ok());
}

}  // namespace
}  // namespace ffibox
