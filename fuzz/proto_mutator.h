// Structure-aware mutation of protobuf inputs for the fuzz targets, through reflection.
//
// libFuzzer's byte mutations rarely turn one valid varint into another meaningful one (a bit
// width of 7, an array of 2^28 elements, a pack of 16), and never copy a nested Type from
// one place of an input to another. ProtoMutator changes a parsed message the way a client
// or a worker could: one field set to a boundary value, a known enum value or a nearby one,
// a message or repeated element added, removed, duplicated or replaced by a copy of another
// message of the same type in the input. The targets' LLVMFuzzerCustomMutator use it for
// part of their mutations and libFuzzer's own byte mutations (LLVMFuzzerMutate) for the rest.
#ifndef FFIBOX_FUZZ_PROTO_MUTATOR_H_
#define FFIBOX_FUZZ_PROTO_MUTATOR_H_

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>

#include "google/protobuf/message.h"

// libFuzzer's default mutation of `size` bytes at `data` (which holds `max_size`).
extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace ffibox {
namespace fuzz {

class ProtoMutator {
 public:
  explicit ProtoMutator(unsigned seed) : random_(seed) {}

  // Applies one structural mutation to `message`.
  void Mutate(google::protobuf::Message* message);

  // Mutates the serialized message of type `prototype` held in `bytes`: structurally when it
  // parses (most of the time), else with libFuzzer's byte mutations. The result is at most
  // `max_size` bytes.
  std::string MutateSerialized(const google::protobuf::Message& prototype, const std::string& bytes,
                               size_t max_size);

  // A uniform random number in [0, n).
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : random_() % n; }

 private:
  std::mt19937_64 random_;
};

// Silences protobuf's logging: every mutated string that is not UTF-8 would log an error
// when parsed. Called by the LLVMFuzzerInitialize that proto_mutator.cc defines for every
// target linked with it.
void QuietProtobufLogs();

// Mutates `size` bytes at `data` (holding `max_size`) as one serialized `prototype` message;
// returns the new size. For LLVMFuzzerCustomMutator of targets whose whole input is one
// message.
size_t MutateMessageInput(const google::protobuf::Message& prototype, uint8_t* data, size_t size,
                          size_t max_size, unsigned seed);

// Mutates the FramedInput (fuzz/framed_input.h) of messages `first` and `second` in `size`
// bytes at `data`: its options byte, or one of its messages as MutateSerialized does.
// Returns the new size.
size_t MutateFramedInput(const google::protobuf::Message& first,
                         const google::protobuf::Message& second, uint8_t* data, size_t size,
                         size_t max_size, unsigned seed);

}  // namespace fuzz
}  // namespace ffibox

#endif  // FFIBOX_FUZZ_PROTO_MUTATOR_H_
