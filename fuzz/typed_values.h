// Values made to fit a type, for the marshalling fuzzer. Mutating a Type and a Value
// independently almost always leaves the value unfit (another field count, a kind the type
// does not take), so marshalling stops at its first check; a value made for the type reaches
// the layout, bit-field and decoding code with boundary values instead.
#ifndef FFIBOX_FUZZ_TYPED_VALUES_H_
#define FFIBOX_FUZZ_TYPED_VALUES_H_

#include <cstdint>
#include <random>

#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace fuzz {

// Returns a value MarshalValue should accept for the validated `type`: integers and bit
// fields at or inside their range's ends, any double, null or remote pointers of
// `generation`, short strings (with NULs), arrays and records as aggregates (unions setting
// one member, any of them), raw bytes or bytes_value now and then. Choices come from `random`.
// Arrays too long to spell out element by element get raw bytes; `budget` caps the values
// made in all (a type may describe far more elements than an input could hold).
v1::Value TypedValue(const v1::Type& type, uint64_t generation, std::mt19937_64* random,
                     int* budget);

}  // namespace fuzz
}  // namespace ffibox

#endif  // FFIBOX_FUZZ_TYPED_VALUES_H_
