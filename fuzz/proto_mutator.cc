#include "fuzz/proto_mutator.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "fuzz/framed_input.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/stubs/logging.h"

namespace ffibox {
namespace fuzz {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Walks deeper than any input libFuzzer keeps (inputs are at most a few KiB) would be wasted.
constexpr int kMaxDepth = 64;
constexpr size_t kMaxSites = 4096;

// One place a mutation can happen: a field of a message (and an element of it, when the
// field is repeated; -1 otherwise).
struct Site {
  Message* message;
  const FieldDescriptor* field;
  int index;
  bool present;  // a repeated element, or a field set to something other than its default
};

void CollectSites(Message* message, int depth, std::vector<Site>* sites,
                  std::vector<Message*>* messages) {
  if (depth > kMaxDepth || sites->size() >= kMaxSites) return;
  messages->push_back(message);
  const Descriptor* descriptor = message->GetDescriptor();
  const Reflection* reflection = message->GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (field->is_map()) continue;
    sites->push_back(
        {message, field, -1, !field->is_repeated() && reflection->HasField(*message, field)});
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
      if (field->is_repeated()) {
        for (int k = 0; k < reflection->FieldSize(*message, field); ++k) {
          sites->push_back({message, field, k, true});
        }
      }
      continue;
    }
    if (field->is_repeated()) {
      for (int k = 0; k < reflection->FieldSize(*message, field); ++k) {
        sites->push_back({message, field, k, true});
        CollectSites(reflection->MutableRepeatedMessage(message, field, k), depth + 1, sites,
                     messages);
      }
    } else if (reflection->HasField(*message, field)) {
      CollectSites(reflection->MutableMessage(message, field), depth + 1, sites, messages);
    }
  }
}

template <typename T>
T Interesting(ProtoMutator* random, T current) {
  using Limits = std::numeric_limits<T>;
  switch (random->Below(7)) {
    case 0:  // small values: counts, indexes, widths, enum-like numbers
      return static_cast<T>(random->Below(17));
    case 6:
      return static_cast<T>(random->Below(72));
    case 1:  // around a power of two
      return static_cast<T>((uint64_t{1} << random->Below(Limits::digits)) +
                            static_cast<int64_t>(random->Below(3)) - 1);
    case 2:
      return random->Below(2) ? Limits::max() : Limits::min();
    case 3:  // nearby (wrapping around)
      return static_cast<T>(static_cast<uint64_t>(current) + random->Below(17) - 8);
    case 4:
      return Limits::is_signed ? static_cast<T>(-static_cast<T>(random->Below(9))) : T{0};
    default:
      return static_cast<T>(random->Below(std::numeric_limits<uint64_t>::max()));
  }
}

double InterestingDouble(ProtoMutator* random) {
  static const double kValues[] = {0.0,
                                   -0.0,
                                   1.0,
                                   -1.0,
                                   0.5,
                                   3.4e38,
                                   1e39,
                                   1e308,
                                   -1e308,
                                   4.9e-324,
                                   9007199254740993.0,
                                   std::numeric_limits<double>::infinity(),
                                   -std::numeric_limits<double>::infinity(),
                                   std::numeric_limits<double>::quiet_NaN()};
  return kValues[random->Below(sizeof kValues / sizeof kValues[0])];
}

// Text for a string or bytes field: libFuzzer's byte mutations of the old one, kept to ASCII
// for `string` fields (which must be valid UTF-8 to parse).
std::string MutateText(const std::string& old, bool utf8) {
  std::string text = old;
  text.resize(old.size() + 16);
  size_t size = LLVMFuzzerMutate(reinterpret_cast<uint8_t*>(&text[0]), old.size(), text.size());
  text.resize(size);
  if (utf8) {
    for (char& c : text) c = static_cast<char>(c & 0x7F);
  }
  return text;
}

// Sets the scalar `site` (an element when index >= 0, else the field; a new element when
// the field is repeated and index < 0).
void MutateScalar(ProtoMutator* random, const Site& site) {
  Message* m = site.message;
  const FieldDescriptor* f = site.field;
  const Reflection* r = m->GetReflection();
  const bool add = f->is_repeated() && site.index < 0;
  const int k = site.index;
  if (!f->is_repeated() && f->has_presence() && random->Below(8) == 0) {
    r->ClearField(m, f);  // e.g. a bit field becomes an ordinary field
    return;
  }
#define FFIBOX_SET(Type, value)             \
  do {                                      \
    if (add) {                              \
      r->Add##Type(m, f, value);            \
    } else if (f->is_repeated()) {          \
      r->SetRepeated##Type(m, f, k, value); \
    } else {                                \
      r->Set##Type(m, f, value);            \
    }                                       \
  } while (false)
#define FFIBOX_GET(Type) \
  (add ? 0 : f->is_repeated() ? r->GetRepeated##Type(*m, f, k) : r->Get##Type(*m, f))
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      FFIBOX_SET(Int32, Interesting<int32_t>(random, FFIBOX_GET(Int32)));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      FFIBOX_SET(Int64, Interesting<int64_t>(random, FFIBOX_GET(Int64)));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      FFIBOX_SET(UInt32, Interesting<uint32_t>(random, FFIBOX_GET(UInt32)));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      FFIBOX_SET(UInt64, Interesting<uint64_t>(random, FFIBOX_GET(UInt64)));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      FFIBOX_SET(Double, InterestingDouble(random));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      FFIBOX_SET(Float, static_cast<float>(InterestingDouble(random)));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      FFIBOX_SET(Bool, !FFIBOX_GET(Bool));
      break;
    case FieldDescriptor::CPPTYPE_ENUM: {
      // Mostly a known value; sometimes an unknown one (proto3 enums are open).
      const auto* type = f->enum_type();
      const int value =
          random->Below(8) != 0
              ? type->value(static_cast<int>(random->Below(type->value_count())))->number()
              : Interesting<int32_t>(random, 0);
      FFIBOX_SET(EnumValue, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      const bool utf8 = f->type() == FieldDescriptor::TYPE_STRING;
      std::string old = add                ? std::string()
                        : f->is_repeated() ? r->GetRepeatedString(*m, f, k)
                                           : r->GetString(*m, f);
      FFIBOX_SET(String, MutateText(old, utf8));
      break;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
#undef FFIBOX_SET
#undef FFIBOX_GET
}

// Mutates the message-typed `site`: clears, creates, adds, removes, duplicates, or replaces
// it with a copy of another message of the same type from `messages`.
void MutateMessageField(ProtoMutator* random, const Site& site,
                        const std::vector<Message*>& messages) {
  Message* m = site.message;
  const FieldDescriptor* f = site.field;
  const Reflection* r = m->GetReflection();
  std::vector<const Message*> same_type;
  for (const Message* other : messages) {
    if (other->GetDescriptor() == f->message_type()) same_type.push_back(other);
  }
  // A copy first: the donor may live inside the field that is about to change.
  Message* donor = nullptr;
  if (!same_type.empty()) {
    donor = same_type[random->Below(same_type.size())]->New();
    donor->CopyFrom(*same_type[random->Below(same_type.size())]);
  }
  const uint64_t choice = random->Below(4);
  if (!f->is_repeated()) {
    if (choice == 0 || donor == nullptr) {
      if (r->HasField(*m, f)) {
        r->ClearField(m, f);
      } else {
        r->MutableMessage(m, f);
      }
    } else {
      r->MutableMessage(m, f)->CopyFrom(*donor);
    }
  } else if (site.index < 0) {
    Message* added = r->AddMessage(m, f);
    if (donor != nullptr && choice != 0) added->CopyFrom(*donor);
  } else if (choice == 0) {
    // Remove element `index`: move it last, then drop it.
    const int last = r->FieldSize(*m, f) - 1;
    for (int k = site.index; k < last; ++k) r->SwapElements(m, f, k, k + 1);
    r->RemoveLast(m, f);
  } else if (choice == 1 || donor == nullptr) {
    Message* copy = r->AddMessage(m, f);
    copy->CopyFrom(r->GetRepeatedMessage(*m, f, site.index));
  } else {
    r->MutableRepeatedMessage(m, f, site.index)->CopyFrom(*donor);
  }
  delete donor;
}

}  // namespace

void ProtoMutator::Mutate(Message* message) {
  std::vector<Site> sites;
  std::vector<Message*> messages;
  CollectSites(message, 0, &sites, &messages);
  if (sites.empty()) return;
  // Mostly what the input holds: most fields of most messages are unset oneof members.
  std::vector<const Site*> present;
  for (const Site& site : sites) {
    if (site.present) present.push_back(&site);
  }
  const Site site = !present.empty() && Below(4) != 0 ? *present[Below(present.size())]
                                                      : sites[Below(sites.size())];
  if (site.field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    MutateMessageField(this, site, messages);
  } else {
    MutateScalar(this, site);
  }
}

std::string ProtoMutator::MutateSerialized(const Message& prototype, const std::string& bytes,
                                           size_t max_size) {
  std::unique_ptr<Message> message(prototype.New());
  if (Below(4) != 0 && message->ParseFromString(bytes)) {
    const uint64_t rounds = 1 + Below(3);
    for (uint64_t i = 0; i < rounds; ++i) Mutate(message.get());
    std::string mutated = message->SerializeAsString();
    if (mutated.size() <= max_size) return mutated;
  }
  // LLVMFuzzerMutate writes at least one byte, which a budget of 0 has no room for.
  if (max_size == 0) return bytes;
  std::string mutated = bytes;
  mutated.resize(std::max(max_size, bytes.size()));
  mutated.resize(LLVMFuzzerMutate(reinterpret_cast<uint8_t*>(&mutated[0]), bytes.size(), max_size));
  return mutated;
}

void QuietProtobufLogs() { google::protobuf::SetLogHandler(nullptr); }

size_t MutateMessageInput(const Message& prototype, uint8_t* data, size_t size, size_t max_size,
                          unsigned seed) {
  ProtoMutator mutator(seed);
  const std::string mutated = mutator.MutateSerialized(
      prototype, std::string(reinterpret_cast<const char*>(data), size), max_size);
  if (mutated.size() > max_size) return size;
  std::memcpy(data, mutated.data(), mutated.size());
  return mutated.size();
}

size_t MutateFramedInput(const Message& first, const Message& second, uint8_t* data, size_t size,
                         size_t max_size, unsigned seed) {
  ProtoMutator mutator(seed);
  FramedInput input;
  if (!SplitFramedInput(data, size, &input)) return LLVMFuzzerMutate(data, size, max_size);
  const uint64_t choice = mutator.Below(8);
  if (choice == 0) {
    input.options = static_cast<uint8_t>(mutator.Below(256));
  } else if (choice <= 3) {
    const size_t budget = std::min<size_t>(0xFFFF, max_size - 3 - input.second.size());
    input.first = mutator.MutateSerialized(first, input.first, budget);
  } else {
    input.second =
        mutator.MutateSerialized(second, input.second, max_size - 3 - input.first.size());
  }
  const std::string joined = JoinFramedInput(input);
  if (joined.size() > max_size) return size;
  std::memcpy(data, joined.data(), joined.size());
  return joined.size();
}

}  // namespace fuzz
}  // namespace ffibox

// Every protobuf target starts quiet (one definition for all of them).
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  ffibox::fuzz::QuietProtobufLogs();
  return 0;
}
