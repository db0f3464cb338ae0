// How much a worker's answer may hold, and what any message takes once parsed, checked on its
// encoding before it is parsed.
//
// A parsed message can take fifty times the bytes of its encoding and more: an empty
// submessage is two bytes on the wire and a whole object once parsed. A worker runs
// untrusted code, so an answer of a few MiB of empty `CallResult.blocks` would cost whoever
// parses it GiBs before any check of its content could refuse it. CheckAnswerShape walks the
// encoding first, copying nothing, and refuses an answer holding more of any repeated field
// than the requests it may answer allow (AnswerLimits), a returned block's pointers beyond
// one per word of its data in the answer, a singular field twice, a value longer than the
// message around it, or more than kMaxUnknownFields fields the reader does not know. What
// passes parses into a bounded number of objects: the results, blocks and changed runs the
// requests allow, and pointers as many as the words of returned data, which an honest
// answer may also report (each about 80 bytes once parsed: ten times the word it sits in).
//
// ParsedBytesAtMost bounds the other way what a message of any shape takes once parsed: the
// broker refuses a client's request that would take more than a few times its size limit
// before parsing it (server/broker/message_codec.h).
//
// The broker applies CheckAnswerShape to every worker frame (server/broker/worker_connection.h), a
// client to every answer it reads on the same-host channel (client/cpp/internal/local_path.h; the
// Python client has its own copy of these rules in ffibox/_answer_shape.py).
#ifndef FFIBOX_CORE_ENCODING_LIMITS_H_
#define FFIBOX_CORE_ENCODING_LIMITS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/call_answer.h"
#include "google/protobuf/descriptor.h"

namespace ffibox {

// The most occurrences of each repeated field an answer may hold, counted over the whole
// answer at any depth. A repeated field not named here (Aggregate.elements: workers send
// records and arrays as raw bytes) may not occur at all.
struct AnswerLimits {
  uint64_t blocks = 0;  // CallResult.blocks
  uint64_t kept = 0;    // CallResult.kept, CallbackInvoke.kept
  // BlockContents.pointers beyond one per 8 bytes of the block's data in the answer before
  // them (those of lasting blocks in the same-host channel's shared area, which come back
  // without data).
  uint64_t pointers = 0;
  uint64_t changed = 0;        // CallResult.changed
  uint64_t results = 0;        // BatchResult.results
  uint64_t layout_fields = 0;  // LayoutResult.fields
  uint64_t args = 0;           // CallbackInvoke.args
  uint64_t pointees = 0;       // CallbackInvoke.pointees
  uint64_t memory_reads = 0;   // MemoryDataList.reads

  // Adds `other`'s limits to these (an answer to any of several requests).
  void Add(const AnswerLimits& other);
};

// The most fields an answer may hold that its reader does not know (a newer worker's).
inline constexpr uint64_t kMaxUnknownFields = 64;

// Answers up to this many bytes are not walked: parsed, they take a few MiB at most.
inline constexpr size_t kShapeCheckedBytes = 64 << 10;

// The most changed runs one result may report: a worker watches at most kMaxChangedBytes of
// blocks and reads, counting each as whole 8-byte words, and reports runs of words.
uint64_t MaxChangedRuns();

// What the result of a call the worker checks as `expected` (core/call_answer.h) may hold:
// its returned blocks, its kept blocks, a pointer per 8-byte word of each lasting block in
// the shared area (whose words are scanned but whose data is not in the answer), and the
// changed runs of watched memory.
AnswerLimits CallAnswerLimits(const ExpectedCallResult& expected);

// What any call's answer may take on the wire besides a record result and its returned
// blocks: a string result (at most 16 MiB, core/marshal.h's kMaxResultStringBytes), a scalar
// or a pointer, an error's message, and the changed runs of watched memory (kMaxChangedBytes
// in runs of at least a word, each with at most 42 bytes of framing: 50 MiB at worst).
inline constexpr uint64_t kCallAnswerBaseBytes = uint64_t{72} << 20;

// What the result of a function of `signature` adds to the answer to a call of it beyond
// kCallAnswerBaseBytes: a record comes back as its bytes (core/marshal.h's UnmarshalResult),
// anything else within the base (0). nullopt when the signature alone does not tell its size
// (a registered type, or one its layout refuses).
std::optional<uint64_t> ResultAnswerBytes(const v1::Signature& signature);

// The most bytes the answer to `call` may take on the wire, for a function whose result adds
// `result_bytes` (ResultAnswerBytes): kCallAnswerBaseBytes, the result, and each returned
// block's data with a pointer reported in each of its 8-byte words (a Relocation takes at
// most 32 bytes, framed), whether the data comes in the answer or in the same-host channel's
// shared area, and each block's framing.
uint64_t CallAnswerBytes(const v1::Call& call, uint64_t result_bytes);

// What the answer to get_layout of `type` may hold: a field layout per field of a record.
AnswerLimits LayoutAnswerLimits(const v1::Type& type);

// What a CallbackInvoke of a callback with at most `max_params` parameters may hold.
AnswerLimits InvokeLimits(uint64_t max_params);

// Checks the encoding of a message of `type` (in order, in `pieces`) against `limits`:
// each repeated field at most as often as they allow, in all, except that a returned block
// (BlockContents) holds a pointer per 8 bytes of its data before them without counting;
// each singular field at most once per message; no value longer than what is left of the
// message around it; at most kMaxUnknownFields unknown fields; nesting at most protobuf's
// 100 deep. Reads the wire format only and stops at the first violation, so it costs at
// most what the limits allow. Answers of at most kShapeCheckedBytes pass unwalked, and
// `limits` is asked for only when an answer is walked.
// INVALID_ARGUMENT with what the answer does ("holds more ffibox.v1.CallResult.blocks than
// the request allows") for a violation or a malformed encoding.
absl::Status CheckAnswerShape(const std::vector<absl::string_view>& pieces,
                              const google::protobuf::Descriptor* type,
                              absl::FunctionRef<AnswerLimits()> limits);

// CheckAnswerShape's walk, whatever the answer's size.
absl::Status WalkAnswerShape(const std::vector<absl::string_view>& pieces,
                             const google::protobuf::Descriptor* type, const AnswerLimits& limits);

// What parsing a message of `type` encoded in `pieces` allocates at most, at the parse's peak,
// worked out from its encoding: each message object (its class's size), each string or
// bytes value and its characters (three times over in a map's entry, or past protobuf's 50 MB
// reservation), a repeated field's array and a slot of it, a message's unknown fields (groups
// too) and their list, a map's node, each with its allocation's overhead, so that neither
// protobuf's arena parse nor its parse onto the heap takes more (protobuf 3.21). An honest
// message of bytes takes about its size, values element by element ten to twenty times their
// encoding, and empty submessages sixty times and more.
// RESOURCE_EXHAUSTED ("would take more than N bytes once parsed") as soon as that passes
// `max_bytes`, having read no further; INVALID_ARGUMENT for a malformed encoding, as
// CheckAnswerShape. Counts no field against limits and refuses no unknown field.
absl::StatusOr<uint64_t> ParsedBytesAtMost(const std::vector<absl::string_view>& pieces,
                                           const google::protobuf::Descriptor* type,
                                           uint64_t max_bytes);

}  // namespace ffibox

#endif  // FFIBOX_CORE_ENCODING_LIMITS_H_
