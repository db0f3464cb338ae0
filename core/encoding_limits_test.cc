#include "core/encoding_limits.h"

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/call_answer.h"
#include "core/call_shape.h"
#include "core/piece_stream.h"
#include "ffibox/v1/ffibox.pb.h"
#include "google/protobuf/arena.h"
#include "gtest/gtest.h"

// Every allocation through operator new (protobuf's objects, arenas, strings and arrays),
// as malloc holds it: the bytes held now and the most held since AllocationPeak began.
std::atomic<uint64_t> held_bytes{0};
std::atomic<uint64_t> peak_bytes{0};

void* Allocate(size_t size) {
  void* memory = malloc(size == 0 ? 1 : size);
  if (memory == nullptr) throw std::bad_alloc();
  const uint64_t held = held_bytes += malloc_usable_size(memory) + sizeof(size_t);
  uint64_t peak = peak_bytes.load();
  while (held > peak && !peak_bytes.compare_exchange_weak(peak, held)) {
  }
  return memory;
}

void Release(void* memory) {
  if (memory == nullptr) return;
  held_bytes -= malloc_usable_size(memory) + sizeof(size_t);
  free(memory);
}

void* operator new(size_t size) { return Allocate(size); }
void* operator new[](size_t size) { return Allocate(size); }
void operator delete(void* memory) noexcept { Release(memory); }
void operator delete[](void* memory) noexcept { Release(memory); }
void operator delete(void* memory, size_t) noexcept { Release(memory); }
void operator delete[](void* memory, size_t) noexcept { Release(memory); }

namespace ffibox {
namespace {

// The most bytes held through operator new while it lives, beyond those held when it began.
class AllocationPeak {
 public:
  AllocationPeak() : before_(held_bytes.load()) { peak_bytes = before_; }
  uint64_t Bytes() const { return peak_bytes.load() - before_; }

 private:
  const uint64_t before_;
};

constexpr uint64_t kBlockBytes = 1 << 20;

// A call sending one 1 MiB OUT block, one IN block and one kept 8-byte OUT block.
v1::Call CallWithBlocks() {
  v1::Call call;
  call.set_function(3);
  v1::MemoryBlock* out = call.add_blocks();
  out->set_size(kBlockBytes);
  out->set_direction(v1::OUT);
  v1::MemoryBlock* in = call.add_blocks();
  in->set_data(std::string(8, '\0'));
  in->set_direction(v1::IN);
  v1::MemoryBlock* kept = call.add_blocks();
  kept->set_size(8);
  kept->set_direction(v1::OUT);
  kept->set_keep(true);
  return call;
}

// The most an honest worker sends back for CallWithBlocks: both OUT blocks, a pointer in
// every word of them, the kept block's address.
v1::Response FullAnswer() {
  v1::Response response;
  response.set_id(7);
  v1::CallResult* call = response.mutable_call();
  for (uint32_t index : {0u, 2u}) {
    v1::BlockContents* block = call->add_blocks();
    block->set_block(index);
    const uint64_t size = index == 0 ? kBlockBytes : 8;
    block->set_data(std::string(size, '\1'));
    for (uint64_t offset = 0; offset < size; offset += 8) {
      v1::Relocation* pointer = block->add_pointers();
      pointer->set_offset(offset);
      pointer->mutable_target()->set_block(2);
    }
  }
  v1::KeptBlock* kept = call->add_kept();
  kept->set_block(2);
  kept->mutable_address()->set_address(0x1000);
  return response;
}

absl::Status Check(const std::string& encoded, const v1::Call& call) {
  return CheckAnswerShape({encoded}, v1::Response::descriptor(),
                          [&call] { return CallAnswerLimits(ExpectedResultOf(call)); });
}

// `count` repetitions of `field` (an encoded field) after the answer's id, inside a message
// field of Response numbered `inside` (13 the call's result, 14 a batch's) unless 0.
std::string Repeated(absl::string_view field, size_t count, int inside) {
  std::string body;
  for (size_t i = 0; i < count; ++i) body.append(field.data(), field.size());
  v1::Response response;
  response.set_id(7);
  std::string encoded = response.SerializeAsString();
  if (inside == 0) return encoded + body;
  // The field's tag, its length, then the repeated fields.
  encoded.push_back(static_cast<char>(inside << 3 | 2));
  uint64_t length = body.size();
  while (length >= 0x80) {
    encoded.push_back(static_cast<char>(length | 0x80));
    length >>= 7;
  }
  encoded.push_back(static_cast<char>(length));
  return encoded + body;
}

TEST(CheckAnswerShape, TheFullestHonestAnswerPasses) {
  const std::string encoded = FullAnswer().SerializeAsString();
  ASSERT_GT(encoded.size(), kShapeCheckedBytes);
  EXPECT_TRUE(Check(encoded, CallWithBlocks()).ok());
  // In pieces, cut anywhere, the same.
  const size_t third = encoded.size() / 3;
  EXPECT_TRUE(CheckAnswerShape({absl::string_view(encoded).substr(0, third + 1),
                                absl::string_view(encoded).substr(third + 1, third),
                                absl::string_view(encoded).substr(2 * third + 1)},
                               v1::Response::descriptor(),
                               [] { return CallAnswerLimits(ExpectedResultOf(CallWithBlocks())); })
                  .ok());
}

// The longest an honest answer to CallWithBlocks can be: both OUT blocks with a pointer in
// every word, each field's value as long as it can be encoded, the longest string result, and
// every changed run one answer may report.
TEST(CallAnswerBytes, TheLongestHonestAnswerFits) {
  v1::Response response = FullAnswer();
  v1::CallResult* call = response.mutable_call();
  for (v1::BlockContents& block : *call->mutable_blocks()) {
    for (v1::Relocation& pointer : *block.mutable_pointers()) {
      pointer.mutable_target()->set_block(~uint32_t{0});
      pointer.mutable_target()->set_offset(~uint64_t{0});
    }
  }
  call->mutable_kept(0)->mutable_address()->set_address(~uint64_t{0});
  call->mutable_kept(0)->mutable_address()->set_generation(~uint64_t{0});
  call->mutable_result()->set_bytes_value(std::string(16 << 20, 'x'));
  call->set_errno_value(-1);
  for (uint64_t run = 0; run < MaxChangedRuns(); ++run) {
    v1::ChangedBlock* changed = call->add_changed();
    changed->mutable_address()->set_address(~uint64_t{0});
    changed->mutable_address()->set_generation(~uint64_t{0});
    changed->set_offset(kMaxWatchedBytes - 8);
    changed->set_data(std::string(8, '\2'));
  }
  v1::Signature signature;
  signature.mutable_result()->set_scalar(v1::CSTRING);
  ASSERT_EQ(ResultAnswerBytes(signature), 0u);
  const uint64_t bound = CallAnswerBytes(CallWithBlocks(), 0);
  EXPECT_LE(response.ByteSizeLong(), bound);
  // And no more than the base beyond the blocks' own bytes and their pointers.
  EXPECT_LT(bound, kCallAnswerBaseBytes + 5 * (kBlockBytes + 8) + 4096);
}

TEST(CallAnswerBytes, ARecordResultAddsItsBytes) {
  v1::Signature signature;
  v1::Type* element = signature.mutable_result()->mutable_record()->add_fields()->mutable_type();
  signature.mutable_result()->mutable_record()->set_kind(v1::RecordType::STRUCT);
  signature.mutable_result()->mutable_record()->mutable_fields(0)->set_name("a");
  element->mutable_array()->set_length(1 << 20);
  element->mutable_array()->mutable_element()->set_scalar(v1::DOUBLE);
  const std::optional<uint64_t> added = ResultAnswerBytes(signature);
  ASSERT_TRUE(added.has_value());
  v1::Response response = FullAnswer();
  response.mutable_call()->mutable_result()->set_raw(std::string(8 << 20, '\3'));
  EXPECT_LE(response.ByteSizeLong(), CallAnswerBytes(CallWithBlocks(), *added));
  EXPECT_LT(*added, (8u << 20) + 4096);
  // A registered type's size is not in the signature.
  signature.mutable_result()->set_registered(1);
  EXPECT_FALSE(ResultAnswerBytes(signature).has_value());
}

TEST(CheckAnswerShape, EmptySubmessagesPastTheRequestAreRefusedBeforeTheyAreParsed) {
  // 8 MiB of empty returned blocks: parsed, 4M objects.
  absl::Status blocks = Check(Repeated(std::string("\x12\x00", 2), 4 << 20, 13), CallWithBlocks());
  EXPECT_FALSE(blocks.ok());
  EXPECT_NE(blocks.message().find("ffibox.v1.CallResult.blocks"), std::string::npos)
      << blocks.message();
  // A batch's results in the answer to a call.
  absl::Status results = Check(Repeated(std::string("\x0a\x00", 2), 4 << 20, 14), CallWithBlocks());
  EXPECT_FALSE(results.ok());
  EXPECT_NE(results.message().find("ffibox.v1.BatchResult.results"), std::string::npos)
      << results.message();
  // One more pointer than the returned blocks have words.
  v1::Response answer = FullAnswer();
  answer.mutable_call()->mutable_blocks(0)->add_pointers()->set_offset(0);
  absl::Status pointers = Check(answer.SerializeAsString(), CallWithBlocks());
  EXPECT_FALSE(pointers.ok());
  EXPECT_NE(pointers.message().find("ffibox.v1.BlockContents.pointers"), std::string::npos);
}

TEST(CheckAnswerShape, ABlockInTheSharedAreaMayReportPointersWithoutDataOnlyWhenLasting) {
  v1::Call call = CallWithBlocks();
  EXPECT_EQ(CallAnswerLimits(ExpectedResultOf(call)).pointers, 0u) << "all held by their data";
  call.mutable_blocks(0)->set_shared_offset(0);
  EXPECT_EQ(CallAnswerLimits(ExpectedResultOf(call)).pointers, 0u);
  call.mutable_blocks(0)->set_keep(true);
  EXPECT_EQ(CallAnswerLimits(ExpectedResultOf(call)).pointers, kBlockBytes / 8);
  // Such an answer: the block marked shared, no data, a pointer in every word.
  v1::Response answer;
  answer.set_id(7);
  v1::BlockContents* block = answer.mutable_call()->add_blocks();
  block->set_shared(true);
  for (uint64_t offset = 0; offset < kBlockBytes; offset += 8) {
    block->add_pointers()->set_offset(offset);
  }
  const AnswerLimits limits = CallAnswerLimits(ExpectedResultOf(call));
  EXPECT_TRUE(CheckAnswerShape({answer.SerializeAsString()}, v1::Response::descriptor(), [&limits] {
                return limits;
              }).ok());
  block->add_pointers();
  EXPECT_FALSE(
      CheckAnswerShape({answer.SerializeAsString()}, v1::Response::descriptor(), [&limits] {
        return limits;
      }).ok());
}

TEST(CheckAnswerShape, ASingularFieldRepeatedIsRefused) {
  // Each occurrence would only replace the last, but costs the walk and the parse.
  absl::Status twice = Check(Repeated("\x08\x07", 1 << 20, 0), CallWithBlocks());
  EXPECT_FALSE(twice.ok());
  EXPECT_NE(twice.message().find("ffibox.v1.Response.id twice"), std::string::npos);
}

TEST(CheckAnswerShape, AFewUnknownFieldsPassAndManyAreRefused) {
  // An honest answer past the walked size, with a few unknown fields in front.
  // Field 99, a varint: unknown to this reader (a newer worker's).
  std::string honest = FullAnswer().SerializeAsString();
  std::string with_few = Repeated("\x98\x06\x01", kMaxUnknownFields, 0).substr(2) + honest;
  EXPECT_TRUE(Check(with_few, CallWithBlocks()).ok());
  std::string with_many = Repeated("\x98\x06\x01", kMaxUnknownFields + 1, 0).substr(2) + honest;
  absl::Status many = Check(with_many, CallWithBlocks());
  EXPECT_FALSE(many.ok());
  EXPECT_NE(many.message().find("unknown fields"), std::string::npos);
}

TEST(CheckAnswerShape, AMalformedEncodingIsRefused) {
  const std::string encoded = FullAnswer().SerializeAsString();
  // The last message shorter than its length.
  EXPECT_FALSE(Check(encoded.substr(0, encoded.size() - 1), CallWithBlocks()).ok());
  EXPECT_FALSE(Check(encoded + std::string("\x07", 1), CallWithBlocks()).ok()) << "wire type 7";
  // generation, a varint, with no value.
  EXPECT_FALSE(Check(encoded + std::string("\x18", 1), CallWithBlocks()).ok()) << "no value";
}

// A submessage whose length runs past the end of the message around it: protobuf's parser
// reads it through what comes after (here as a Value's aggregate of empty elements, N
// objects), while a walk that kept the shorter limit would read those bytes as one unknown
// field of Response and let the answer through.
TEST(CheckAnswerShape, AValueLongerThanTheMessageAroundItIsRefused) {
  constexpr size_t kElements = 1 << 20;
  std::string elements;
  for (size_t i = 0; i < kElements; ++i) elements.append("\x0a\x00", 2);
  auto varint = [](uint64_t value) {
    std::string bytes;
    for (; value >= 0x80; value >>= 7) bytes.push_back(static_cast<char>(value | 0x80));
    bytes.push_back(static_cast<char>(value));
    return bytes;
  };
  // Response field 8 (unknown), length-delimited: the aggregate's elements.
  const std::string tail = "\x42" + varint(elements.size()) + elements;
  // CallResult{result: Value of length |tail| + 1}, which ends after 2 bytes.
  const std::string value = "\x0a" + varint(tail.size() + 1);
  const std::string encoded = std::string("\x08\x01\x6a", 3) + varint(value.size()) + value + tail;
  absl::Status walked = Check(encoded, CallWithBlocks());
  EXPECT_FALSE(walked.ok());
  EXPECT_NE(walked.message().find("not a valid encoding"), std::string::npos) << walked;
}

TEST(CheckAnswerShape, PointersBeyondTheWordsOfTheirBlocksDataAreRefused) {
  // Empty pointers in a returned block without data: each an object once parsed.
  v1::Response answer;
  answer.set_id(7);
  v1::BlockContents* block = answer.mutable_call()->add_blocks();
  block->set_block(0);
  for (int i = 0; i < 100000; ++i) block->add_pointers();
  absl::Status refused = Check(answer.SerializeAsString(), CallWithBlocks());
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("ffibox.v1.BlockContents.pointers"), std::string::npos)
      << refused;
  // With the block's 1 MiB of data before them, as many as its words pass.
  block->set_data(std::string(kBlockBytes, '\1'));
  EXPECT_TRUE(Check(answer.SerializeAsString(), CallWithBlocks()).ok());
}

TEST(CheckAnswerShape, SmallAnswersAreNotWalked) {
  // Parsed, a small answer takes a few MiB at most; the content checks refuse it after.
  const std::string small = Repeated(std::string("\x12\x00", 2), kShapeCheckedBytes / 2 - 8, 13);
  ASSERT_LE(small.size(), kShapeCheckedBytes);
  EXPECT_TRUE(Check(small, CallWithBlocks()).ok());
}

TEST(AnswerLimits, AddingSumsAllButTheChangedRunsOfOneResult) {
  AnswerLimits a = CallAnswerLimits(ExpectedResultOf(CallWithBlocks()));
  EXPECT_EQ(a.blocks, 2u);
  EXPECT_EQ(a.kept, 1u);
  EXPECT_EQ(a.pointers, 0u);
  EXPECT_EQ(a.changed, MaxChangedRuns());
  a.Add(InvokeLimits(256));
  a.Add(CallAnswerLimits(ExpectedResultOf(CallWithBlocks())));
  EXPECT_EQ(a.blocks, 4u);
  EXPECT_EQ(a.args, 256u);
  EXPECT_EQ(a.changed, MaxChangedRuns());
}

// What parsing `wire` as a Request allocates at its peak, the most of: onto the heap, into
// an arena, and into an arena from pieces.
uint64_t ParseAllocates(const std::string& wire) {
  uint64_t most = 0;
  {
    AllocationPeak peak;
    v1::Request parsed;
    EXPECT_TRUE(parsed.ParseFromString(wire));
    most = peak.Bytes();
  }
  {
    AllocationPeak peak;
    google::protobuf::Arena arena;
    auto* parsed = google::protobuf::Arena::CreateMessage<v1::Request>(&arena);
    EXPECT_TRUE(parsed->ParseFromString(wire));
    most = std::max(most, peak.Bytes());
  }
  {
    // As the broker parses a request: into an arena, from gRPC's slices of 64 KiB.
    std::vector<absl::string_view> pieces;
    for (size_t at = 0; at < wire.size(); at += 64 << 10) {
      pieces.push_back(absl::string_view(wire).substr(at, 64 << 10));
    }
    AllocationPeak peak;
    google::protobuf::Arena arena;
    auto* parsed = google::protobuf::Arena::CreateMessage<v1::Request>(&arena);
    EXPECT_TRUE(ParseFromPieces(
        std::move(pieces), [](size_t) {}, parsed));
    most = std::max(most, peak.Bytes());
  }
  return most;
}

// Requests of each shape a parse allocates for: many submessages, values element by element,
// long and short strings, a map, unknown fields, a batch.
std::vector<std::pair<std::string, std::string>> RequestsOfEveryShape() {
  std::vector<std::pair<std::string, std::string>> requests;
  v1::Request request;
  request.set_id(1);
  for (int i = 0; i < 100000; ++i) request.mutable_call()->add_blocks();
  requests.emplace_back("empty blocks", request.SerializeAsString());

  request.Clear();
  v1::Aggregate* ints = request.mutable_call()->add_args()->mutable_aggregate();
  for (int i = 0; i < 100000; ++i) ints->add_elements()->set_int_value(i);
  requests.emplace_back("an aggregate of ints", request.SerializeAsString());

  request.Clear();
  v1::Aggregate* pointers = request.mutable_call()->add_args()->mutable_aggregate();
  for (int i = 0; i < 50000; ++i) {
    v1::BlockRef* ref = pointers->add_elements()->mutable_pointer()->mutable_block();
    ref->set_block(1);
    ref->set_offset(i);
  }
  requests.emplace_back("an aggregate of pointers", request.SerializeAsString());

  request.Clear();
  request.mutable_call()->add_blocks()->set_data(std::string(4 << 20, 'x'));
  for (int i = 0; i < 20000; ++i) {
    request.mutable_call()->add_blocks()->set_data(std::string(i % 40, 'y'));
  }
  requests.emplace_back("bytes long and short", request.SerializeAsString());

  request.Clear();
  for (int i = 0; i < 20000; ++i) {
    (*request.mutable_open()->mutable_environment())[absl::StrCat("VARIABLE_NUMBER_", i)] =
        std::string(i % 40, 'v');
  }
  requests.emplace_back("a map", request.SerializeAsString());

  std::string unknown = v1::Request().SerializeAsString();
  for (int i = 0; i < 20000; ++i) {
    unknown += std::string("\xba\x3e", 2);  // field 999, length-delimited
    const std::string value(i % 40, 'u');
    unknown += static_cast<char>(value.size());
    unknown += value;
    unknown += std::string("\xc0\x3e\x05", 3);  // field 1000, a varint
  }
  requests.emplace_back("unknown fields", unknown);

  // One unknown field in each of many messages, and a count just past a power of two (the
  // list of unknown fields has just doubled).
  request.Clear();
  for (int i = 0; i < 65537; ++i) {
    v1::Value* value = request.mutable_call()->add_args();
    value->GetReflection()->MutableUnknownFields(value)->AddVarint(1000, i);
  }
  requests.emplace_back("an unknown field in each value", request.SerializeAsString());
  request.Clear();
  for (int i = 0; i < 65537; ++i) {
    request.GetReflection()->MutableUnknownFields(&request)->AddVarint(1000, i);
  }
  requests.emplace_back("unknown fields just past a power of two", request.SerializeAsString());

  // Just past a power of two of empty values: the old array and the new, twice as long.
  request.Clear();
  for (int i = 0; i < 131073; ++i) request.mutable_call()->add_args();
  requests.emplace_back("empty values just past a power of two", request.SerializeAsString());

  // Map entries holding only a key, each in an open of its own.
  std::string keys_only = v1::Request().SerializeAsString();
  for (int i = 0; i < 100000; ++i) {
    const std::string key = absl::StrCat("K", i % 1000000);
    std::string entry = "\x0a";
    entry += static_cast<char>(key.size());
    entry += key;
    std::string environment = "\x22";
    environment += static_cast<char>(entry.size());
    environment += entry;
    keys_only += "\x52";  // Request.open
    keys_only += static_cast<char>(environment.size());
    keys_only += environment;
  }
  requests.emplace_back("map entries holding only a key", keys_only);

  // Map entries with the value before the key: protobuf parses those into an entry first.
  std::string out_of_order = v1::Request().SerializeAsString();
  for (int i = 0; i < 2000; ++i) {
    std::string entry;
    const std::string value(40, 'v');
    const std::string key = absl::StrCat("KEY_", i, std::string(300, 'k'));
    entry += '\x12';
    entry += static_cast<char>(value.size());
    entry += value;
    entry += "\x0a\xb0\x02";  // key, 304 or more bytes: a two-byte length
    entry.back() = static_cast<char>(key.size() >> 7);
    entry[entry.size() - 2] = static_cast<char>(0x80 | (key.size() & 0x7f));
    entry += key;
    std::string environment = "\x22";  // OpenSession.environment
    environment += static_cast<char>(0x80 | (entry.size() & 0x7f));
    environment += static_cast<char>(entry.size() >> 7);
    environment += entry;
    std::string open = "\x52";  // Request.open
    open += static_cast<char>(0x80 | (environment.size() & 0x7f));
    open += static_cast<char>(environment.size() >> 7);
    out_of_order += open + environment;
  }
  requests.emplace_back("map entries out of order", out_of_order);

  // Unknown groups, which protobuf keeps as unknown fields.
  std::string groups = v1::Request().SerializeAsString();
  for (int i = 0; i < 20000; ++i) {
    groups += "\xbb\x3e";  // field 999, a group
    for (int j = 0; j < 4; ++j) groups += "\x08\x05";
    groups += "\xbc\x3e";
  }
  requests.emplace_back("unknown groups", groups);

  request.Clear();
  for (int i = 0; i < 4096; ++i) {
    v1::Call* call = request.mutable_batch()->add_calls();
    call->set_function(2);
    call->add_args()->set_int_value(i);
    call->add_args()->set_float_value(0.5);
    call->add_blocks()->set_data("sixteen bytes..");
  }
  requests.emplace_back("a batch", request.SerializeAsString());
  return requests;
}

// Never below, and within four times: the parse of a map in order, or of unknown groups,
// takes less than the worst the walk must allow for.
TEST(ParsedBytesAtMost, IsNeverBelowWhatAParseAllocatesAndNearItForEveryShape) {
  for (const auto& [shape, wire] : RequestsOfEveryShape()) {
    absl::StatusOr<uint64_t> estimate =
        ParsedBytesAtMost({wire}, v1::Request::descriptor(), UINT64_MAX);
    ASSERT_TRUE(estimate.ok()) << shape << ": " << estimate.status();
    const uint64_t allocated = ParseAllocates(wire);
    EXPECT_GE(*estimate, allocated) << shape;
    EXPECT_LE(*estimate, 4 * allocated + (64 << 10)) << shape;
    std::cout << shape << ": " << wire.size() << " bytes, " << allocated
              << " allocated at the peak, " << *estimate << " worked out\n";
  }
}

TEST(ParsedBytesAtMost, EmptySubmessagesAreCountedAtFarMoreThanTheirBytes) {
  const std::string wire = RequestsOfEveryShape()[0].second;
  absl::StatusOr<uint64_t> estimate =
      ParsedBytesAtMost({wire}, v1::Request::descriptor(), UINT64_MAX);
  ASSERT_TRUE(estimate.ok());
  EXPECT_GT(*estimate, 30 * wire.size());
}

TEST(ParsedBytesAtMost, PastTheLimitIsRefusedAndInPiecesIsTheSame) {
  const std::string wire = RequestsOfEveryShape()[1].second;
  absl::StatusOr<uint64_t> whole = ParsedBytesAtMost({wire}, v1::Request::descriptor(), UINT64_MAX);
  ASSERT_TRUE(whole.ok());
  std::vector<absl::string_view> pieces;
  for (size_t at = 0; at < wire.size(); at += 1000) {
    pieces.push_back(absl::string_view(wire).substr(at, 1000));
  }
  absl::StatusOr<uint64_t> pieced = ParsedBytesAtMost(pieces, v1::Request::descriptor(), *whole);
  ASSERT_TRUE(pieced.ok());
  EXPECT_EQ(*pieced, *whole);
  absl::StatusOr<uint64_t> refused =
      ParsedBytesAtMost({wire}, v1::Request::descriptor(), *whole - 1);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.status().message(),
            absl::StrCat("would take more than ", *whole - 1, " bytes once parsed"));
}

TEST(ParsedBytesAtMost, AMalformedEncodingIsRefused) {
  std::string wire = RequestsOfEveryShape().back().second;
  wire.resize(wire.size() - 3);
  EXPECT_EQ(ParsedBytesAtMost({wire}, v1::Request::descriptor(), UINT64_MAX).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ffibox
