// Fuzzes the broker's parsing of frames from a worker (server/broker/worker_reply.h), which runs
// untrusted code and may send anything.
//
// Input: the bytes of one frame. It is parsed with ParseWorkerFrame and, by its kind,
// checked as the answer to each of several pending requests (loads, resolves, callback
// definitions, calls with blocks of every direction and kept blocks, batches whose calls
// send no blocks or blocks of every direction and kept blocks, untyped and typed memory
// reads, operations answered with `done`), as a callback invocation of each of several
// callback signatures, or as an event. Checks that a refused frame is INVALID_ARGUMENT with
// a message, and that an accepted one keeps every promise CheckWorkerResponse,
// CheckCallbackInvoke and CheckWorkerEvent make, re-checked here independently: the
// client's id restored, the result kind of the operation, the assigned handle, returned
// blocks and the pointers reported in them within the call's blocks, kept blocks in order,
// a batch's results one per call (or one per call before the failed one its error names),
// each checked against its own call's blocks, read sizes, and shipped pointees of the
// parameter types' sizes. The walk of a frame's encoding before it is parsed
// (WalkAnswerShape, core/encoding_limits.h) is checked too: a frame it lets through parses
// into no more of each repeated field than its limits allow.
#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/call_answer.h"
#include "core/call_shape.h"
#include "core/encoding_limits.h"
#include "core/layout.h"
#include "core/piece_stream.h"
#include "core/test_types.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"
#include "fuzz/fuzz_checks.h"
#include "fuzz/proto_mutator.h"
#include "server/broker/pending_request.h"
#include "server/broker/worker_reply.h"
#include "server/protocol/worker_protocol.pb.h"

namespace ffibox {
namespace {

using ::ffibox::testing::PointerTo;
using ::ffibox::testing::ScalarType;

constexpr uint64_t kSequence = 41;
constexpr uint64_t kClientId = 7;
constexpr uint64_t kNotReturned = PendingRequest::kNotReturned;

PendingRequest Pending(v1::Request::OpCase op, uint64_t handle = 0) {
  PendingRequest pending;
  pending.sequence = kSequence;
  pending.client_id = kClientId;
  pending.op = op;
  pending.handle = handle;
  pending.label = "fuzz";
  return pending;
}

// What a call sending blocks of `sizes` expects back: `returned` sizes (kNotReturned for
// IN blocks) and the `kept` blocks.
ExpectedCallResult Blocks(std::vector<uint64_t> sizes, std::vector<uint64_t> returned,
                          std::vector<uint32_t> kept) {
  ExpectedCallResult blocks;
  blocks.block_sizes = std::move(sizes);
  blocks.returned_block_sizes = std::move(returned);
  blocks.kept_blocks = std::move(kept);
  return blocks;
}

PendingRequest Batch(uint32_t calls, std::vector<std::pair<uint32_t, ExpectedCallResult>> blocks) {
  PendingRequest batch = Pending(v1::Request::kBatch);
  batch.batch_calls = calls;
  batch.batch_blocks = std::move(blocks);
  return batch;
}

std::vector<PendingRequest> PendingShapes() {
  std::vector<PendingRequest> shapes;
  shapes.push_back(Pending(v1::Request::kLoadLibrary, 3));
  shapes.push_back(Pending(v1::Request::kResolveFunction, 5));
  shapes.push_back(Pending(v1::Request::kDefineCallback, 9));
  shapes.push_back(Pending(v1::Request::kCall));  // no blocks
  // Blocks [OUT 4, IN 8, INOUT 16, OUT 0, unspecified 24 kept, IN 8 kept].
  PendingRequest call = Pending(v1::Request::kCall);
  call.call = Blocks({4, 8, 16, 0, 24, 8}, {4, kNotReturned, 16, 0, 24, kNotReturned}, {4, 5});
  shapes.push_back(call);
  shapes.push_back(Batch(3, {}));  // three calls without blocks
  // Six calls: none; [IN 8]; [OUT 4, INOUT 16]; none; [unspecified 24 kept, IN 8 kept, OUT 0];
  // [INOUT 8 kept].
  shapes.push_back(Batch(6, {{1, Blocks({8}, {kNotReturned}, {})},
                             {2, Blocks({4, 16}, {4, 16}, {})},
                             {4, Blocks({24, 8, 0}, {24, kNotReturned, 0}, {0, 1})},
                             {5, Blocks({8}, {8}, {0})}}));
  // One call: [OUT 16 kept, IN 4].
  shapes.push_back(Batch(1, {{0, Blocks({16, 4}, {16, kNotReturned}, {0})}}));
  PendingRequest read = Pending(v1::Request::kReadMemory);
  read.read_size = 16;
  shapes.push_back(read);
  PendingRequest typed_read = Pending(v1::Request::kReadMemory);
  typed_read.read_typed = true;
  typed_read.read_size = 12;
  shapes.push_back(typed_read);
  PendingRequest read_list = Pending(v1::Request::kReadMemoryList);
  read_list.read_list = {{16, false}, {12, true}};
  read_list.answer_limits.memory_reads = 2;
  shapes.push_back(read_list);
  shapes.push_back(Pending(v1::Request::kAllocMemory));
  shapes.push_back(Pending(v1::Request::kReadString));
  shapes.push_back(Pending(v1::Request::kLookupSymbol));
  shapes.push_back(Pending(v1::Request::kGetLayout));
  shapes.push_back(Pending(v1::Request::kWriteMemory));
  shapes.push_back(Pending(v1::Request::kFreeCallback, 9));
  shapes.push_back(Pending(v1::Request::kPing));
  return shapes;
}

v1::Type ArrayOf(const v1::Type& element, uint64_t length) {
  v1::Type type;
  *type.mutable_array()->mutable_element() = element;
  type.mutable_array()->set_length(length);
  return type;
}

std::vector<v1::Signature> CallbackSignatures() {
  std::vector<v1::Signature> signatures(4);
  // void (int)
  *signatures[0].add_params() = ScalarType(v1::INT);
  // int (struct {int a; double b; int c:3;}*, char[16], double*, const char*)
  v1::Type record;
  record.mutable_record()->set_kind(v1::RecordType::STRUCT);
  v1::Field* a = record.mutable_record()->add_fields();
  *a->mutable_type() = ScalarType(v1::INT);
  v1::Field* b = record.mutable_record()->add_fields();
  *b->mutable_type() = ScalarType(v1::DOUBLE);
  v1::Field* c = record.mutable_record()->add_fields();
  *c->mutable_type() = ScalarType(v1::INT);
  c->set_bit_width(3);
  *signatures[1].mutable_result() = ScalarType(v1::INT);
  *signatures[1].add_params() = PointerTo(record);
  *signatures[1].add_params() = ArrayOf(ScalarType(v1::CHAR), 16);
  *signatures[1].add_params() = PointerTo(ScalarType(v1::DOUBLE));
  *signatures[1].add_params() = ScalarType(v1::CSTRING);
  // void (void*, int[0], int (*)(int))
  *signatures[2].add_params() = ScalarType(v1::POINTER);
  *signatures[2].add_params() = ArrayOf(ScalarType(v1::INT), 0);
  v1::Type function;
  *function.mutable_function() = signatures[0];
  *signatures[2].add_params() = function;
  // void (char (*)[kMaxInvokePointeeBytes], char (*)[1]): the first pointee alone is the cap.
  *signatures[3].add_params() = PointerTo(ArrayOf(ScalarType(v1::CHAR), kMaxInvokePointeeBytes));
  *signatures[3].add_params() = PointerTo(ArrayOf(ScalarType(v1::CHAR), 1));
  for (const v1::Signature& signature : signatures) {
    FUZZ_CHECK(ValidateSignature(signature, TypeLimits(), "callback").ok(),
               "a callback signature of the fuzzer is invalid");
  }
  return signatures;
}

void CheckRefusal(const absl::Status& status, const char* what) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument, what,
             ": a refusal that is not INVALID_ARGUMENT: ", status.ToString());
  FUZZ_CHECK(!status.message().empty(), what, ": a refusal without a message");
}

bool KnownErrorCode(v1::ErrorCode code) {
  return v1::ErrorCode_IsValid(code) && code != v1::ERROR_CODE_UNSPECIFIED;
}

v1::Response::ResultCase ResultOf(v1::Request::OpCase op) {
  switch (op) {
    case v1::Request::kLoadLibrary:
      return v1::Response::kLibrary;
    case v1::Request::kResolveFunction:
      return v1::Response::kFunction;
    case v1::Request::kDefineCallback:
      return v1::Response::kCallback;
    case v1::Request::kCall:
      return v1::Response::kCall;
    case v1::Request::kBatch:
      return v1::Response::kBatch;
    case v1::Request::kReadMemory:
      return v1::Response::kMemory;
    case v1::Request::kReadMemoryList:
      return v1::Response::kMemoryList;
    case v1::Request::kAllocMemory:
      return v1::Response::kAllocated;
    case v1::Request::kReadString:
      return v1::Response::kString;
    case v1::Request::kLookupSymbol:
      return v1::Response::kSymbol;
    case v1::Request::kGetLayout:
      return v1::Response::kLayout;
    default:
      return v1::Response::kDone;
  }
}

// `memory`, accepted as what a read of `size` bytes (`typed`: of a type of that size) read.
void CheckAcceptedRead(const v1::MemoryData& memory, uint64_t size, bool typed) {
  if (!typed) {
    FUZZ_CHECK(memory.data().size() == size && !memory.has_value(), "untyped read of ",
               memory.data().size(), " bytes");
    return;
  }
  FUZZ_CHECK(memory.data().empty() && memory.has_value() &&
                 memory.value().kind_case() != v1::Value::KIND_NOT_SET,
             "typed read without a value or with data");
  if (memory.value().kind_case() == v1::Value::kRaw) {
    FUZZ_CHECK(memory.value().raw().size() == size, "typed raw read of ",
               memory.value().raw().size(), " bytes");
  }
}

// `call`, accepted as the result of a call that sent the blocks `expected` describes.
void AssertAcceptedCallResult(const v1::CallResult& call, const ExpectedCallResult& expected) {
  absl::flat_hash_set<uint32_t> seen;
  for (const v1::BlockContents& block : call.blocks()) {
    const uint32_t index = block.block();
    FUZZ_CHECK(index < expected.returned_block_sizes.size(), "returned block ", index,
               " was not sent");
    FUZZ_CHECK(seen.insert(index).second, "block ", index, " came back twice");
    const uint64_t size = expected.returned_block_sizes[index];
    FUZZ_CHECK(size != kNotReturned, "IN block ", index, " came back");
    FUZZ_CHECK(!block.shared(), "block ", index, " came back claiming the shared area");
    FUZZ_CHECK(block.data().size() == size, "block ", index, " came back with ",
               block.data().size(), " bytes, not ", size);
    uint64_t next = 0;
    for (const v1::Relocation& pointer : block.pointers()) {
      FUZZ_CHECK(pointer.offset() % 8 == 0 && pointer.offset() >= next, "pointer offset ",
                 pointer.offset(), " is not an increasing multiple of 8");
      FUZZ_CHECK(pointer.offset() + 8 <= size, "pointer at ", pointer.offset(), " overruns block ",
                 index, " of ", size, " bytes");
      next = pointer.offset() + 8;
      const uint32_t target = pointer.target().block();
      FUZZ_CHECK(target < expected.block_sizes.size(), "pointer to block ", target);
      FUZZ_CHECK(pointer.target().offset() <= expected.block_sizes[target], "pointer to offset ",
                 pointer.target().offset(), " of block ", target);
    }
  }
  FUZZ_CHECK(static_cast<size_t>(call.kept_size()) == expected.kept_blocks.size(),
             "kept block count");
  for (int i = 0; i < call.kept_size(); ++i) {
    FUZZ_CHECK(call.kept(i).block() == expected.kept_blocks[i], "kept block ", i, " names block ",
               call.kept(i).block());
    FUZZ_CHECK(call.kept(i).address().address() != 0, "kept block at NULL");
  }
  uint64_t changed_bytes = 0;
  for (const v1::ChangedBlock& changed : call.changed()) {
    FUZZ_CHECK(changed.address().address() != 0 && !changed.data().empty() &&
                   changed.offset() % 8 == 0 && changed.offset() < kMaxWatchedBytes,
               "an empty changed run, one at NULL or at offset ", changed.offset());
    changed_bytes += changed.data().size();
  }
  FUZZ_CHECK(changed_bytes <= kMaxChangedBytes, "changed blocks of ", changed_bytes, " bytes");
}

// The blocks call `index` of the batch `pending` sent: its entry in batch_blocks, or none.
const ExpectedCallResult& BatchCallBlocks(const PendingRequest& pending, uint32_t index) {
  static const ExpectedCallResult* const kNoBlocks = new ExpectedCallResult();
  for (const auto& [call, blocks] : pending.batch_blocks) {
    if (call == index) return blocks;
  }
  return *kNoBlocks;
}

// `batch`, accepted as the results of the first calls of the batch `pending`: each is
// checked against its own call's blocks.
void CheckBatchResults(const v1::BatchResult& batch, const PendingRequest& pending) {
  FUZZ_CHECK(static_cast<size_t>(batch.results_size()) <= pending.batch_calls, "a batch of ",
             pending.batch_calls, " calls came back with ", batch.results_size(), " results");
  for (int i = 0; i < batch.results_size(); ++i) {
    AssertAcceptedCallResult(batch.results(i), BatchCallBlocks(pending, static_cast<uint32_t>(i)));
  }
}

void CheckAcceptedResponse(const v1::Response& response, const PendingRequest& pending) {
  FUZZ_CHECK(response.id() == pending.client_id, "the client's id was not restored");
  if (response.has_error()) {
    const v1::Error& error = response.error();
    FUZZ_CHECK(KnownErrorCode(error.code()), "error code ", error.code());
    FUZZ_CHECK(!error.never_reached_worker(), "an error saying its request never reached a worker");
    if (response.result_case() == v1::Response::RESULT_NOT_SET) {
      FUZZ_CHECK(!error.has_batch_index(), "an error naming batch call ", error.batch_index(),
                 " without the results before it passed");
      return;
    }
    // Only a failed batch has both: the results of the calls before the one that failed.
    FUZZ_CHECK(pending.op == v1::Request::kBatch && response.has_batch(),
               "an error with a result of kind ", response.result_case(), " passed for operation ",
               pending.op);
    const uint32_t ran = static_cast<uint32_t>(response.batch().results_size());
    FUZZ_CHECK(ran < pending.batch_calls, "a failed batch with ", ran, " results of ",
               pending.batch_calls, " calls passed");
    FUZZ_CHECK(ran == (error.has_batch_index() ? error.batch_index() : 0),
               "a failed batch's error names call ", error.batch_index(), " after ", ran,
               " results");
    CheckBatchResults(response.batch(), pending);
    return;
  }
  FUZZ_CHECK(response.result_case() == ResultOf(pending.op), "result kind ", response.result_case(),
             " for operation ", pending.op);
  switch (response.result_case()) {
    case v1::Response::kLibrary:
      FUZZ_CHECK(response.library().library() == pending.handle, "another library handle");
      break;
    case v1::Response::kFunction:
      FUZZ_CHECK(response.function().function() == pending.handle, "another function handle");
      break;
    case v1::Response::kCallback:
      FUZZ_CHECK(response.callback().callback() == pending.handle, "another callback handle");
      break;
    case v1::Response::kCall:
      AssertAcceptedCallResult(response.call(), pending.call);
      break;
    case v1::Response::kBatch:
      FUZZ_CHECK(static_cast<uint32_t>(response.batch().results_size()) == pending.batch_calls,
                 "a batch of ", pending.batch_calls, " calls answered with ",
                 response.batch().results_size(), " results");
      CheckBatchResults(response.batch(), pending);
      break;
    case v1::Response::kMemory:
      CheckAcceptedRead(response.memory(), pending.read_size, pending.read_typed);
      break;
    case v1::Response::kMemoryList:
      FUZZ_CHECK(
          static_cast<size_t>(response.memory_list().reads_size()) == pending.read_list.size(),
          "a list of ", pending.read_list.size(), " reads answered with ",
          response.memory_list().reads_size());
      for (int i = 0; i < response.memory_list().reads_size(); ++i) {
        CheckAcceptedRead(response.memory_list().reads(i), pending.read_list[i].size,
                          pending.read_list[i].typed);
      }
      break;
    default:
      break;
  }
}

void FuzzResponse(const internal::WorkerReply& reply, const std::vector<PendingRequest>& shapes) {
  for (const PendingRequest& pending : shapes) {
    absl::StatusOr<v1::Response> checked = CheckWorkerResponse(reply.response(), pending);
    if (!checked.ok()) {
      CheckRefusal(checked.status(), "CheckWorkerResponse");
      continue;
    }
    CheckAcceptedResponse(*checked, pending);
  }
}

// `buffer_bytes`: the callbacks' DefineCallback.buffer_bytes.
void FuzzInvoke(const v1::CallbackInvoke& invoke, const std::vector<v1::Signature>& signatures,
                uint32_t buffer_bytes) {
  for (const v1::Signature& signature : signatures) {
    std::vector<std::pair<uint32_t, uint64_t>> shipped = {{99, 99}};  // must be replaced
    absl::Status status = CheckCallbackInvoke(invoke, signature, buffer_bytes, &shipped);
    if (!status.ok()) {
      CheckRefusal(status, "CheckCallbackInvoke");
      continue;
    }
    FUZZ_CHECK(invoke.invocation() != 0, "invocation 0 passed");
    FUZZ_CHECK(invoke.args_size() == signature.params_size(), "argument count");
    for (const v1::Value& arg : invoke.args()) {
      FUZZ_CHECK(arg.kind_case() != v1::Value::KIND_NOT_SET, "an argument without a value passed");
    }
    FUZZ_CHECK(shipped.size() == static_cast<size_t>(invoke.pointees_size()), "shipped lists ",
               shipped.size(), " pointees of ", invoke.pointees_size());
    uint64_t total = 0;
    absl::flat_hash_set<uint32_t> seen;
    for (int i = 0; i < invoke.pointees_size(); ++i) {
      const v1::PointeeData& pointee = invoke.pointees(i);
      FUZZ_CHECK(pointee.arg() < static_cast<uint32_t>(signature.params_size()), "pointee of arg ",
                 pointee.arg());
      FUZZ_CHECK(seen.insert(pointee.arg()).second, "pointee shipped twice");
      const v1::Type& param = signature.params(pointee.arg());
      const v1::Type* type = param.kind_case() == v1::Type::kPointer ? &param.pointer().pointee()
                             : param.kind_case() == v1::Type::kArray ? &param
                                                                     : nullptr;
      FUZZ_CHECK(type != nullptr, "pointee for a parameter that is no pointer or array");
      uint64_t size = 0;
      uint64_t alignment = 0;
      FUZZ_CHECK(ComputeSizeAndAlignment(*type, &size, &alignment).ok(), "pointee type layout");
      FUZZ_CHECK(pointee.data().size() == size, "pointee of ", pointee.data().size(),
                 " bytes for a type of ", size);
      FUZZ_CHECK(shipped[i].first == pointee.arg() && shipped[i].second == size, "shipped entry ",
                 i);
      FUZZ_CHECK(pointee.following().size() <= (buffer_bytes > size ? buffer_bytes - size : 0),
                 pointee.following().size(), " bytes after a pointee of ", size, " where ",
                 buffer_bytes, " were asked for");
      total += size + pointee.following().size();
    }
    FUZZ_CHECK(total <= kMaxInvokePointeeBytes, "pointees exceed the cap");
  }
}

// Small limits, so that the fuzzer reaches them.
AnswerLimits SmallLimits() {
  AnswerLimits limits;
  limits.blocks = 2;
  limits.kept = 1;
  limits.pointers = 4;
  limits.changed = 3;
  limits.results = 2;
  limits.layout_fields = 2;
  limits.args = 3;
  limits.pointees = 1;
  return limits;
}

// Adds up how often each repeated field occurs in `message`, at any depth, by full name
// (pointers beyond one per word of their block's data).
void CountRepeated(const google::protobuf::Message& message,
                   absl::flat_hash_map<std::string, uint64_t>* counts) {
  const google::protobuf::Reflection* reflection = message.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const google::protobuf::FieldDescriptor* field : fields) {
    const bool is_message = field->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE;
    if (!field->is_repeated()) {
      if (is_message) CountRepeated(reflection->GetMessage(message, field), counts);
      continue;
    }
    const int size = reflection->FieldSize(message, field);
    uint64_t counted = static_cast<uint64_t>(size);
    if (field->full_name() == "ffibox.v1.BlockContents.pointers") {
      // A pointer per word of the block's data is free (the walk counts only those after
      // the data on the wire, so at least these).
      const uint64_t held = static_cast<const v1::BlockContents&>(message).data().size() / 8;
      counted = counted > held ? counted - held : 0;
    }
    (*counts)[field->full_name()] += counted;
    for (int i = 0; is_message && i < size; ++i) {
      CountRepeated(reflection->GetRepeatedMessage(message, field, i), counts);
    }
  }
}

// The walk of the frame's encoding: a refusal is INVALID_ARGUMENT, and a frame it lets
// through that protobuf parses holds no more of each repeated field than SmallLimits.
void CheckWalk(absl::string_view frame) {
  static const AnswerLimits kLimits = SmallLimits();
  absl::Status walked = WalkAnswerShape({frame}, internal::WorkerReply::descriptor(), kLimits);
  if (!walked.ok()) {
    CheckRefusal(walked, "WalkAnswerShape");
    return;
  }
  internal::WorkerReply parsed;
  if (frame.size() > INT_MAX ||
      !parsed.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
    return;
  }
  absl::flat_hash_map<std::string, uint64_t> counts;
  CountRepeated(parsed, &counts);
  // One limit bounds the kept blocks of results and invocations together (AnswerLimits::kept).
  if (auto invoke_kept = counts.find("ffibox.v1.CallbackInvoke.kept");
      invoke_kept != counts.end()) {
    const uint64_t told = invoke_kept->second;
    counts.erase(invoke_kept);
    counts["ffibox.v1.CallResult.kept"] += told;
  }
  const absl::flat_hash_map<std::string, uint64_t> allowed = {
      {"ffibox.v1.CallResult.blocks", kLimits.blocks},
      {"ffibox.v1.CallResult.kept", kLimits.kept},
      {"ffibox.v1.BlockContents.pointers", kLimits.pointers},
      {"ffibox.v1.CallResult.changed", kLimits.changed},
      {"ffibox.v1.BatchResult.results", kLimits.results},
      {"ffibox.v1.LayoutResult.fields", kLimits.layout_fields},
      {"ffibox.v1.CallbackInvoke.args", kLimits.args},
      {"ffibox.v1.CallbackInvoke.pointees", kLimits.pointees},
  };
  for (const auto& [name, count] : counts) {
    auto limit = allowed.find(name);
    FUZZ_CHECK(count <= (limit == allowed.end() ? 0 : limit->second), "the walk let ", count,
               " of ", name, " through");
  }
}

void FuzzFrame(absl::string_view frame) {
  static const std::vector<PendingRequest>* const kShapes =
      new std::vector<PendingRequest>(PendingShapes());
  static const std::vector<v1::Signature>* const kSignatures =
      new std::vector<v1::Signature>(CallbackSignatures());

  CheckWalk(frame);
  absl::StatusOr<internal::WorkerReply> reply = ParseWorkerFrame(frame);
  // A large frame reaches the parse in pieces: cut the same bytes into pieces (of a length
  // the frame's first byte picks) and the parse must come to the same verdict and message.
  FramePayload pieces;
  const size_t piece = frame.empty() ? 1 : 1 + static_cast<unsigned char>(frame[0]) % 97;
  for (size_t at = 0; at < frame.size(); at += piece) {
    pieces.pieces.emplace_back(frame.substr(at, piece));
  }
  if (pieces.pieces.size() > 1) {
    // Limits that bind no frame the fuzzer makes (the walk has its own check above).
    absl::StatusOr<internal::WorkerReply> in_pieces = ParseWorkerFrame(std::move(pieces), [] {
      return AnswerLimits{1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20};
    });
    FUZZ_CHECK(in_pieces.ok() == reply.ok(), "the parse in pieces says ",
               in_pieces.status().ToString(), ", the whole parse ", reply.status().ToString());
    if (reply.ok()) {
      FUZZ_CHECK(in_pieces->SerializeAsString() == reply->SerializeAsString(),
                 "the parse in pieces found another message");
    }
  }
  {
    // And with every bytes field over 8 bytes placed apart, as fields over 50 MB are.
    std::vector<absl::string_view> views;
    for (size_t at = 0; at < frame.size(); at += piece) views.push_back(frame.substr(at, piece));
    internal::WorkerReply whole;
    const bool whole_ok = frame.size() <= INT_MAX &&
                          whole.ParseFromArray(frame.data(), static_cast<int>(frame.size()));
    internal::WorkerReply apart;
    const bool apart_ok = ParseFromPieces(
        std::move(views), [](size_t) {}, &apart, /*large_bytes=*/8);
    FUZZ_CHECK(apart_ok == whole_ok, "placing large fields apart says ", apart_ok,
               ", the whole parse ", whole_ok);
    if (whole_ok) {
      FUZZ_CHECK(apart.SerializeAsString() == whole.SerializeAsString(),
                 "placing large fields apart found another message");
    }
  }
  if (!reply.ok()) {
    CheckRefusal(reply.status(), "ParseWorkerFrame");
    return;
  }
  const int kinds =
      reply->has_response() + reply->has_invoke() + reply->has_event() + reply->started();
  FUZZ_CHECK(kinds == 1, "a frame with ", kinds, " kinds passed");
  if (reply->started()) return;  // the worker's first frame: AwaitStart's alone
  if (reply->has_response()) {
    FuzzResponse(*reply, *kShapes);
    return;
  }
  if (reply->has_invoke()) {
    // Callbacks that asked for no bytes after their pointees, for a few, and for the most.
    for (const uint32_t buffer_bytes : {0u, 64u, kMaxCallbackBufferBytes}) {
      FuzzInvoke(reply->invoke(), *kSignatures, buffer_bytes);
    }
    return;
  }
  absl::Status event = CheckWorkerEvent(reply->event());
  if (!event.ok()) {
    CheckRefusal(event, "CheckWorkerEvent");
    return;
  }
  FUZZ_CHECK(reply->event().kind() == v1::SessionEvent::CALLBACK_ERROR, "event kind ",
             reply->event().kind());
  FUZZ_CHECK(KnownErrorCode(reply->event().error().code()), "event error code ",
             reply->event().error().code());
}

}  // namespace
}  // namespace ffibox

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ffibox::FuzzFrame(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  return ffibox::fuzz::MutateMessageInput(ffibox::internal::WorkerReply::default_instance(), data,
                                          size, max_size, seed);
}
