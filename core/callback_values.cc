#include "core/callback_values.h"

#include <ffi.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/blocks.h"
#include "core/errors.h"
#include "core/layout.h"
#include "core/safe_memory.h"
#include "core/types.h"
#include "core/utf8.h"

namespace ffibox {
namespace {

uint64_t LoadAddress(const void* arg) {
  uint64_t address = 0;
  std::memcpy(&address, arg, sizeof address);
  return address;
}

// A string argument as its contents, or as its address when the contents cannot be sent.
void DecodeStringArgument(v1::Scalar scalar, uint64_t address, uint64_t generation,
                          v1::Value* out) {
  if (address == 0) {
    out->mutable_pointer()->set_null(true);
    return;
  }
  if (scalar == v1::CSTRING) {
    absl::StatusOr<std::string> text = SafeReadCString(address, kMaxCallbackStringBytes + 1);
    if (text.ok() && text->size() <= kMaxCallbackStringBytes) {
      *out->mutable_bytes_value() = std::move(*text);
      return;
    }
  } else {
    absl::StatusOr<std::u32string> wide = SafeReadWString(address, kMaxCallbackStringBytes + 1);
    std::string utf8;
    if (wide.ok() && wide->size() <= kMaxCallbackStringBytes && EncodeUtf8(*wide, &utf8)) {
      *out->mutable_text_value() = std::move(utf8);
      return;
    }
  }
  SetAddress(address, generation, out);
}

// The type whose bytes a pointer parameter designates, or nullptr when nothing is shipped
// for it (void*, strings, function pointers, records by value, scalars).
const v1::Type* ShippablePointee(const v1::Type& param) {
  if (param.kind_case() == v1::Type::kArray) return &param;
  if (param.kind_case() != v1::Type::kPointer) return nullptr;
  const v1::Type& pointee = param.pointer().pointee();
  switch (pointee.kind_case()) {
    case v1::Type::kScalar:
      return pointee.scalar() == v1::VOID ? nullptr : &pointee;
    case v1::Type::kRecord:
    case v1::Type::kArray:
      return &pointee;
    default:
      return nullptr;
  }
}

// What is readable of the `want` bytes at `address`: those before the first page that
// cannot be read.
std::string ReadFollowing(uint64_t address, uint64_t want) {
  std::string bytes(want, '\0');
  bytes.resize(SafeReadReadable(address, bytes.data(), want));
  return bytes;
}

// Ships the memory behind pointer parameter `index` when it is small and readable, and what
// follows it up to `buffer_bytes` from `address` on.
void ShipPointee(const v1::Type& pointee, uint32_t index, uint64_t address, uint64_t buffer_bytes,
                 v1::CallbackInvoke* invoke, std::vector<ShippedPointee>* shipped) {
  if (address == 0) return;
  uint64_t size = 0;
  uint64_t alignment = 0;
  if (!ComputeSizeAndAlignment(pointee, &size, &alignment).ok()) return;
  if (size == 0 || size > kMaxShippedPointeeBytes) return;
  std::string bytes(size, '\0');
  if (!SafeRead(address, bytes.data(), size).ok()) return;
  v1::PointeeData* data = invoke->add_pointees();
  data->set_arg(index);
  *data->mutable_data() = std::move(bytes);
  buffer_bytes = std::min(buffer_bytes, kMaxShippedPointeeBytes);
  if (buffer_bytes > size) {
    // Inside a block of a call running on this thread (memory the client passed: the array
    // qsort sorts), no further than its end: beyond it lies memory of other objects, which a
    // client backing the argument with a buffer gets as zeros.
    const uint64_t block_end = CallBlocks::EndOfRunningBlock(address);
    if (block_end != 0) buffer_bytes = std::min(buffer_bytes, block_end - address);
  }
  uint64_t end = 0;
  if (buffer_bytes > size && !__builtin_add_overflow(address, buffer_bytes, &end)) {
    *data->mutable_following() = ReadFollowing(address + size, buffer_bytes - size);
  }
  shipped->push_back(ShippedPointee{index, address, size});
}

// Bytes of return storage a result of `type` occupies (records: exactly their size, since
// libffi may hand out the caller's own buffer for them).
uint64_t ResultStorageBytes(const v1::Type& type) {
  if (type.kind_case() == v1::Type::kRecord) {
    uint64_t size = 0;
    uint64_t alignment = 0;
    if (!ComputeSizeAndAlignment(type, &size, &alignment).ok()) return 0;
    return size;
  }
  if (type.kind_case() == v1::Type::kScalar && type.scalar() == v1::LONGDOUBLE) {
    return sizeof(long double);
  }
  return sizeof(ffi_arg);
}

}  // namespace

bool ReturnsVoid(const v1::Signature& signature) {
  return !signature.has_result() || (signature.result().kind_case() == v1::Type::kScalar &&
                                     signature.result().scalar() == v1::VOID);
}

absl::Status DecodeCallbackArguments(const v1::Signature& signature, void* const* args,
                                     uint64_t generation, uint64_t buffer_bytes,
                                     v1::CallbackInvoke* invoke,
                                     std::vector<ShippedPointee>* shipped) {
  for (int i = 0; i < signature.params_size(); ++i) {
    const v1::Type& param = signature.params(i);
    v1::Value* value = invoke->add_args();
    const void* arg = args[i];
    const bool is_string = param.kind_case() == v1::Type::kScalar &&
                           (param.scalar() == v1::CSTRING || param.scalar() == v1::WSTRING);
    if (is_string) {
      DecodeStringArgument(param.scalar(), LoadAddress(arg), generation, value);
      continue;
    }
    if (param.kind_case() == v1::Type::kArray || param.kind_case() == v1::Type::kPointer) {
      const uint64_t address = LoadAddress(arg);
      SetAddress(address, generation, value);
      const v1::Type* pointee = ShippablePointee(param);
      if (pointee != nullptr) ShipPointee(*pointee, i, address, buffer_bytes, invoke, shipped);
      continue;
    }
    uint64_t size = 0;
    uint64_t alignment = 0;
    absl::Status status = ComputeSizeAndAlignment(param, &size, &alignment);
    if (status.ok()) {
      status = DecodeValue(param, absl::string_view(static_cast<const char*>(arg), size),
                           generation, value);
    }
    if (!status.ok()) return PrefixField(status, absl::StrCat("signature.params[", i, "]"));
  }
  return absl::OkStatus();
}

bool DecodeScalarArguments(const v1::Signature& signature, void* const* args, uint64_t generation,
                           absl::InlinedVector<ScalarBits, 8>* out) {
  out->clear();
  for (int i = 0; i < signature.params_size(); ++i) {
    const v1::Type& param = signature.params(i);
    if (param.kind_case() != v1::Type::kScalar || param.scalar() == v1::POINTER ||
        param.scalar() == v1::CSTRING || param.scalar() == v1::WSTRING) {
      return false;
    }
    uint64_t size = 0;
    uint64_t alignment = 0;
    v1::Value value;
    if (!ComputeSizeAndAlignment(param, &size, &alignment).ok() ||
        !DecodeValue(param, absl::string_view(static_cast<const char*>(args[i]), size), generation,
                     &value)
             .ok()) {
      return false;
    }
    const std::optional<ScalarBits> bits = ScalarBitsOfValue(value);
    if (!bits.has_value()) return false;
    out->push_back(*bits);
  }
  return true;
}

absl::Status WriteBackPointee(const std::vector<ShippedPointee>& shipped,
                              const v1::PointeeData& pointee) {
  for (const ShippedPointee& candidate : shipped) {
    if (candidate.arg != pointee.arg()) continue;
    if (pointee.data().size() != candidate.size) {
      return InvalidArgumentAt(
          "data", absl::StrCat("argument ", pointee.arg(), "'s pointee is ", candidate.size,
                               " bytes, the data ", pointee.data().size()));
    }
    return SafeWrite(candidate.address, pointee.data().data(), candidate.size);
  }
  return InvalidArgumentAt("arg", absl::StrCat("no pointee of argument ", pointee.arg(),
                                               " was shipped with the invoke"));
}

void StoreZeroResult(const v1::Signature& signature, void* storage) {
  if (ReturnsVoid(signature)) return;
  std::memset(storage, 0, ResultStorageBytes(signature.result()));
}

absl::Status StoreCallbackResult(const v1::Signature& signature, const v1::Value* result,
                                 const MarshalContext& context, void* storage) {
  if (ReturnsVoid(signature)) return absl::OkStatus();
  StoreZeroResult(signature, storage);
  if (result == nullptr || result->kind_case() == v1::Value::KIND_NOT_SET) {
    return InvalidArgumentAt("", "the callback returns a value but the client sent none");
  }
  // Nothing the value points to may need storage beyond this invocation.
  MarshalContext bounded;
  bounded.generation = context.generation;
  bounded.callbacks = context.callbacks;
  const v1::Type& type = signature.result();
  absl::Status status;
  if (type.kind_case() == v1::Type::kRecord) {
    status = MarshalValue(type, *result, bounded, storage);
    if (!status.ok()) StoreZeroResult(signature, storage);
    return status;
  }
  alignas(16) unsigned char slot[16] = {};
  status = MarshalArgument(type, *result, bounded, slot);
  if (!status.ok()) return status;
  if (type.kind_case() == v1::Type::kScalar) {
    const v1::Scalar scalar = type.scalar();
    const ScalarInfo info = GetScalarInfo(scalar);
    if (scalar == v1::BOOL || info.is_integer) {
      // libffi reads a whole ffi_arg back from a closure: widen as the C type's signedness
      // says (bool is unsigned).
      const uint64_t size = scalar == v1::BOOL ? 1 : info.size;
      uint64_t bits = 0;
      std::memcpy(&bits, slot, size);
      const int shift = static_cast<int>(64 - size * 8);
      if (scalar != v1::BOOL && info.is_signed && shift > 0) {
        bits = static_cast<uint64_t>(static_cast<int64_t>(bits << shift) >> shift);
      }
      ffi_arg widened = static_cast<ffi_arg>(bits);
      std::memcpy(storage, &widened, sizeof widened);
      return absl::OkStatus();
    }
  }
  std::memcpy(storage, slot, ResultStorageBytes(type));
  return absl::OkStatus();
}

}  // namespace ffibox
