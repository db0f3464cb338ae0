// Closures called from C: argument decoding, result storage (including the widening libffi
// requires for narrow integers), records by value, shipped pointees, and callback ids in
// calls.
#include "core/closure.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/call.h"
#include "core/callback_values.h"
#include "core/errors.h"
#include "core/test_types.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace {

struct Point {
  int x;
  int y;
};
struct Mixed {
  float f;
  double d;
};
struct Big {  // MEMORY class: returned through a hidden pointer
  long a, b, c;
};

}  // namespace

extern "C" int ApplyTwiceForClosureTest(int (*f)(int), int x) { return f(f(x)); }

// Memory no call placed: 512 bytes of 'o'.
unsigned char g_outside_blocks[512];

// Calls fill with a pointer 8 bytes into `block` (a block of the call), then with one into
// memory no call placed.
extern "C" void FillTwiceForClosureTest(void (*fill)(unsigned char*), unsigned char* block) {
  fill(block + 8);
  fill(g_outside_blocks);
}

namespace ffibox {
namespace {

using namespace ::ffibox::testing;  // NOLINT: the test type builders

constexpr uint64_t kGeneration = 3;

v1::Signature Sig(const v1::Type* result, std::initializer_list<v1::Type> params) {
  v1::Signature signature;
  if (result != nullptr) *signature.mutable_result() = *result;
  for (const v1::Type& param : params) *signature.add_params() = param;
  return signature;
}

v1::Type PointType() {
  return Struct({MakeField("x", ScalarType(v1::INT)), MakeField("y", ScalarType(v1::INT))});
}

// A closure whose handler decodes the arguments and answers with `answer(invoke)`.
struct Recorder {
  uint64_t buffer_bytes = 0;  // the callback's DefineCallback.buffer_bytes
  v1::CallbackInvoke invoke;
  std::vector<ShippedPointee> shipped;
};

std::unique_ptr<Closure> MakeClosure(const v1::Signature& signature, Recorder* recorder,
                                     std::function<v1::Value(const v1::CallbackInvoke&)> answer) {
  const v1::Signature copy = signature;
  absl::StatusOr<std::unique_ptr<Closure>> closure = Closure::Create(
      signature, TypeLimits(), [recorder, answer, copy](void* const* args, void* result) {
        recorder->invoke.Clear();
        recorder->shipped.clear();
        absl::Status decoded = DecodeCallbackArguments(
            copy, args, kGeneration, recorder->buffer_bytes, &recorder->invoke, &recorder->shipped);
        EXPECT_TRUE(decoded.ok()) << decoded;
        v1::Value value = answer(recorder->invoke);
        MarshalContext context;
        context.generation = kGeneration;
        absl::Status stored = StoreCallbackResult(copy, &value, context, result);
        EXPECT_TRUE(stored.ok()) << stored;
      });
  EXPECT_TRUE(closure.ok()) << closure.status();
  return closure.ok() ? std::move(*closure) : nullptr;
}

TEST(Closure, IntegerArgumentsAreDecodedAndTheResultReturned) {
  Recorder recorder;
  const v1::Type int_type = ScalarType(v1::INT);
  auto closure = MakeClosure(
      Sig(&int_type, {ScalarType(v1::INT), ScalarType(v1::LONGLONG), ScalarType(v1::UCHAR)}),
      &recorder, [](const v1::CallbackInvoke& invoke) {
        return IntValue(invoke.args(0).int_value() * 100 + invoke.args(1).int_value() +
                        static_cast<int64_t>(invoke.args(2).uint_value()));
      });
  auto fn = reinterpret_cast<int (*)(int, long long, unsigned char)>(closure->address());
  EXPECT_EQ(fn(-3, -40, 200), -300 - 40 + 200);
  ASSERT_EQ(recorder.invoke.args_size(), 3);
  EXPECT_EQ(recorder.invoke.args(0).int_value(), -3);
  EXPECT_EQ(recorder.invoke.args(2).uint_value(), 200u);
}

TEST(Closure, FloatingArgumentsAndResultsKeepTheirPrecision) {
  Recorder recorder;
  const v1::Type double_type = ScalarType(v1::DOUBLE);
  auto closure =
      MakeClosure(Sig(&double_type,
                      {ScalarType(v1::FLOAT), ScalarType(v1::DOUBLE), ScalarType(v1::LONGDOUBLE)}),
                  &recorder, [](const v1::CallbackInvoke& invoke) {
                    return FloatValue(invoke.args(0).float_value() + invoke.args(1).float_value() +
                                      invoke.args(2).float_value());
                  });
  auto fn = reinterpret_cast<double (*)(float, double, long double)>(closure->address());
  EXPECT_DOUBLE_EQ(fn(1.5f, 0.25, 1000.0L), 1001.75);

  const v1::Type float_type = ScalarType(v1::FLOAT);
  auto halve = MakeClosure(Sig(&float_type, {ScalarType(v1::FLOAT)}), &recorder,
                           [](const v1::CallbackInvoke& invoke) {
                             return FloatValue(invoke.args(0).float_value() / 2);
                           });
  EXPECT_EQ(reinterpret_cast<float (*)(float)>(halve->address())(3.0f), 1.5f);

  const v1::Type long_double_type = ScalarType(v1::LONGDOUBLE);
  auto twice = MakeClosure(Sig(&long_double_type, {ScalarType(v1::LONGDOUBLE)}), &recorder,
                           [](const v1::CallbackInvoke& invoke) {
                             return FloatValue(invoke.args(0).float_value() * 2);
                           });
  EXPECT_EQ(reinterpret_cast<long double (*)(long double)>(twice->address())(2.25L), 4.5L);
}

TEST(Closure, RecordsPassAndReturnByValueInEveryClass) {
  Recorder recorder;
  const v1::Type point = PointType();
  auto swap = MakeClosure(Sig(&point, {point}), &recorder, [](const v1::CallbackInvoke& invoke) {
    Point p;
    std::memcpy(&p, invoke.args(0).raw().data(), sizeof p);
    Point swapped{p.y, p.x};
    v1::Value value;
    value.set_raw(&swapped, sizeof swapped);
    return value;
  });
  Point swapped = reinterpret_cast<Point (*)(Point)>(swap->address())(Point{1, 2});
  EXPECT_EQ(swapped.x, 2);
  EXPECT_EQ(swapped.y, 1);

  const v1::Type mixed =
      Struct({MakeField("f", ScalarType(v1::FLOAT)), MakeField("d", ScalarType(v1::DOUBLE))});
  auto scale = MakeClosure(Sig(&mixed, {mixed, ScalarType(v1::INT)}), &recorder,
                           [](const v1::CallbackInvoke& invoke) {
                             Mixed m;
                             std::memcpy(&m, invoke.args(0).raw().data(), sizeof m);
                             const int k = static_cast<int>(invoke.args(1).int_value());
                             v1::Value value;  // as an aggregate this time
                             *value.mutable_aggregate()->add_elements() = FloatValue(m.f * k);
                             *value.mutable_aggregate()->add_elements() = FloatValue(m.d * k);
                             return value;
                           });
  Mixed scaled = reinterpret_cast<Mixed (*)(Mixed, int)>(scale->address())(Mixed{1.5f, 2.5}, 2);
  EXPECT_EQ(scaled.f, 3.0f);
  EXPECT_EQ(scaled.d, 5.0);

  const v1::Type big =
      Struct({MakeField("a", ScalarType(v1::LONG)), MakeField("b", ScalarType(v1::LONG)),
              MakeField("c", ScalarType(v1::LONG))});
  auto negate = MakeClosure(Sig(&big, {big}), &recorder, [](const v1::CallbackInvoke& invoke) {
    Big b;
    std::memcpy(&b, invoke.args(0).raw().data(), sizeof b);
    Big negated{-b.a, -b.b, -b.c};
    v1::Value value;
    value.set_raw(&negated, sizeof negated);
    return value;
  });
  Big negated = reinterpret_cast<Big (*)(Big)>(negate->address())(Big{1, 2, 3});
  EXPECT_EQ(negated.a, -1);
  EXPECT_EQ(negated.b, -2);
  EXPECT_EQ(negated.c, -3);
}

// libffi reads a whole ffi_arg back from a closure returning a narrow integer.
TEST(Closure, NarrowIntegerResultsAreWidenedToAFullFfiArg) {
  struct Case {
    v1::Scalar scalar;
    v1::Value value;
    ffi_arg expected;
  };
  const std::vector<Case> cases = {
      {v1::CHAR, IntValue(-1), static_cast<ffi_arg>(int64_t{-1})},
      {v1::SCHAR, IntValue(-128), static_cast<ffi_arg>(int64_t{-128})},
      {v1::UCHAR, UintValue(255), 255},
      {v1::SHORT, IntValue(-2), static_cast<ffi_arg>(int64_t{-2})},
      {v1::USHORT, UintValue(65535), 65535},
      {v1::INT, IntValue(-7), static_cast<ffi_arg>(int64_t{-7})},
      {v1::UINT, UintValue(0xFFFFFFFFu), 0xFFFFFFFFu},
      {v1::BOOL, BoolValue(true), 1},
  };
  for (const Case& c : cases) {
    const v1::Type type = ScalarType(c.scalar);
    alignas(16) unsigned char storage[16];
    std::memset(storage, 0xAA, sizeof storage);
    MarshalContext context;
    ASSERT_TRUE(StoreCallbackResult(Sig(&type, {}), &c.value, context, storage).ok());
    ffi_arg stored;
    std::memcpy(&stored, storage, sizeof stored);
    EXPECT_EQ(stored, c.expected) << v1::Scalar_Name(c.scalar);
  }
}

TEST(Closure, NarrowIntegerResultsReachNativeCallersIntact) {
  Recorder recorder;
  const v1::Type schar = ScalarType(v1::SCHAR);
  auto minus_one = MakeClosure(Sig(&schar, {}), &recorder,
                               [](const v1::CallbackInvoke&) { return IntValue(-1); });
  EXPECT_EQ(reinterpret_cast<signed char (*)()>(minus_one->address())(), -1);
  const v1::Type ushort = ScalarType(v1::USHORT);
  auto big = MakeClosure(Sig(&ushort, {}), &recorder,
                         [](const v1::CallbackInvoke&) { return UintValue(65000); });
  EXPECT_EQ(reinterpret_cast<unsigned short (*)()>(big->address())(), 65000);
  const v1::Type boolean = ScalarType(v1::BOOL);
  auto yes = MakeClosure(Sig(&boolean, {}), &recorder,
                         [](const v1::CallbackInvoke&) { return BoolValue(true); });
  EXPECT_TRUE(reinterpret_cast<bool (*)()>(yes->address())());

  // Through libffi's own caller, which inspects the whole returned register.
  ffi_cif cif;
  ASSERT_EQ(ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 0, &ffi_type_sint8, nullptr), FFI_OK);
  ffi_arg result = 0;
  ffi_call(&cif, FFI_FN(minus_one->address()), &result, nullptr);
  EXPECT_EQ(static_cast<ffi_sarg>(result), -1);
}

TEST(Closure, PointeesAreShippedAndWrittenBack) {
  Recorder recorder;
  auto mutate = MakeClosure(Sig(nullptr, {PointerTo(PointType()), ScalarType(v1::POINTER)}),
                            &recorder, [](const v1::CallbackInvoke&) { return v1::Value(); });
  Point p{4, 5};
  int opaque = 0;
  reinterpret_cast<void (*)(Point*, void*)>(mutate->address())(&p, &opaque);
  ASSERT_EQ(recorder.invoke.pointees_size(), 1);  // nothing for the void*
  EXPECT_EQ(recorder.invoke.pointees(0).arg(), 0u);
  EXPECT_EQ(recorder.invoke.pointees(0).data(), std::string(reinterpret_cast<char*>(&p), sizeof p));
  EXPECT_EQ(recorder.invoke.args(0).pointer().remote().address(), reinterpret_cast<uintptr_t>(&p));
  EXPECT_EQ(recorder.invoke.args(0).pointer().remote().generation(), kGeneration);

  Point moved{40, 50};
  v1::PointeeData back;
  back.set_arg(0);
  back.set_data(&moved, sizeof moved);
  ASSERT_TRUE(WriteBackPointee(recorder.shipped, back).ok());
  EXPECT_EQ(p.x, 40);
  EXPECT_EQ(p.y, 50);

  back.set_data("short");
  EXPECT_THAT(WriteBackPointee(recorder.shipped, back), StatusIs(v1::INVALID_ARGUMENT));
  back.set_arg(1);
  back.set_data(&moved, sizeof moved);
  EXPECT_THAT(WriteBackPointee(recorder.shipped, back), StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(p.x, 40);
}

TEST(Closure, BytesAfterAPointeeAreShippedAsFarAsAskedAndReadable) {
  // Three pages, the third unreadable; ints from the pointer on.
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* mapped =
      mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapped, MAP_FAILED);
  ASSERT_EQ(mprotect(static_cast<char*>(mapped) + 2 * page, page, PROT_NONE), 0);
  char* bytes = static_cast<char*>(mapped);
  for (size_t i = 0; i < 2 * page; ++i) bytes[i] = static_cast<char>(i * 7);
  Recorder recorder;
  auto look = MakeClosure(Sig(nullptr, {PointerTo(ScalarType(v1::INT))}), &recorder,
                          [](const v1::CallbackInvoke&) { return v1::Value(); });
  auto call = reinterpret_cast<void (*)(char*)>(look->address());
  auto following = [&] { return recorder.invoke.pointees(0).following(); };

  recorder.buffer_bytes = 64;  // all readable: the 60 bytes after the int
  call(bytes + 100);
  ASSERT_EQ(recorder.invoke.pointees_size(), 1);
  EXPECT_EQ(recorder.invoke.pointees(0).data(), std::string(bytes + 100, 4));
  EXPECT_EQ(following(), std::string(bytes + 100 + 4, 60));
  ASSERT_EQ(recorder.shipped.size(), 1u);
  EXPECT_EQ(recorder.shipped[0].size, 4u);  // what may be written back: the int alone

  call(bytes + 2 * page - 20);  // 64 would reach into the unreadable page: up to its start
  EXPECT_EQ(following(), std::string(bytes + 2 * page - 16, 16));
  call(bytes + 2 * page - 4);  // the int ends the readable pages: nothing after it
  ASSERT_EQ(recorder.invoke.pointees_size(), 1);
  EXPECT_EQ(following(), "");
  recorder.buffer_bytes = 2 * page;  // across a readable page's end, up to the unreadable one
  call(bytes + page - 20);
  EXPECT_EQ(following(), std::string(bytes + page - 16, page + 16));

  recorder.buffer_bytes = 4;  // the pointee fills what was asked for
  call(bytes + 100);
  EXPECT_EQ(following(), "");
  recorder.buffer_bytes = 0;
  call(bytes + 100);
  EXPECT_EQ(following(), "");
  recorder.buffer_bytes = 1 << 20;  // capped at kMaxShippedPointeeBytes, then by the pages
  call(bytes);
  EXPECT_EQ(following(), std::string(bytes + 4, 2 * page - 4));
  ASSERT_EQ(munmap(mapped, 3 * page), 0);
  std::vector<char> large(4 * kMaxShippedPointeeBytes, 'x');
  call(large.data());
  EXPECT_EQ(following().size(), kMaxShippedPointeeBytes - 4);
}

TEST(Closure, ArrayParametersShipTheirWholeLength) {
  Recorder recorder;
  auto sum = MakeClosure(Sig(nullptr, {ArrayOf(ScalarType(v1::INT), 3)}), &recorder,
                         [](const v1::CallbackInvoke&) { return v1::Value(); });
  int values[3] = {1, 2, 3};
  reinterpret_cast<void (*)(int*)>(sum->address())(values);
  ASSERT_EQ(recorder.invoke.pointees_size(), 1);
  EXPECT_EQ(recorder.invoke.pointees(0).data().size(), sizeof values);
}

TEST(Closure, StringArgumentsArriveAsTheirContents) {
  Recorder recorder;
  auto strings = MakeClosure(
      Sig(nullptr, {ScalarType(v1::CSTRING), ScalarType(v1::WSTRING), ScalarType(v1::CSTRING)}),
      &recorder, [](const v1::CallbackInvoke&) { return v1::Value(); });
  reinterpret_cast<void (*)(const char*, const wchar_t*, const char*)>(strings->address())(
      "hello", L"w\u00e9", nullptr);
  EXPECT_EQ(recorder.invoke.args(0).bytes_value(), "hello");
  EXPECT_EQ(recorder.invoke.args(1).text_value(), "w\xc3\xa9");
  EXPECT_TRUE(recorder.invoke.args(2).pointer().null());
  reinterpret_cast<void (*)(const char*, const wchar_t*, const char*)>(strings->address())(
      reinterpret_cast<const char*>(16), nullptr, "");
  EXPECT_EQ(recorder.invoke.args(0).pointer().remote().address(), 16u);  // unreadable
  EXPECT_EQ(recorder.invoke.args(2).bytes_value(), "");
}

TEST(Closure, InvalidResultsLeaveZero) {
  const v1::Type schar = ScalarType(v1::SCHAR);
  alignas(16) unsigned char storage[16];
  std::memset(storage, 0xAA, sizeof storage);
  MarshalContext context;
  v1::Value too_big = IntValue(1000);
  EXPECT_THAT(StoreCallbackResult(Sig(&schar, {}), &too_big, context, storage),
              StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(StoreCallbackResult(Sig(&schar, {}), nullptr, context, storage),
              StatusIs(v1::INVALID_ARGUMENT));
  const v1::Type cstring = ScalarType(v1::CSTRING);
  v1::Value text = BytesValue("no storage outlives the invocation");
  EXPECT_THAT(StoreCallbackResult(Sig(&cstring, {}), &text, context, storage),
              StatusIs(v1::INVALID_ARGUMENT));
  ffi_arg stored;
  std::memcpy(&stored, storage, sizeof stored);
  EXPECT_EQ(stored, 0u);
}

TEST(Closure, VariadicSignaturesAreRefused) {
  v1::Signature signature = Sig(nullptr, {ScalarType(v1::INT)});
  signature.set_variadic(true);
  absl::StatusOr<std::unique_ptr<Closure>> closure =
      Closure::Create(signature, TypeLimits(), [](void* const*, void*) {});
  EXPECT_THAT(closure.status(), StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(ToProtoError(closure.status()).field(), "signature.variadic");
}

class OneCallback : public CallbackResolver {
 public:
  explicit OneCallback(const Closure* closure) : closure_(closure) {}
  absl::StatusOr<uint64_t> AddressOf(uint64_t id) const override {
    if (id == 1) return reinterpret_cast<uintptr_t>(closure_->address());
    v1::Error error;
    error.set_code(v1::NOT_FOUND);
    error.set_field("pointer.callback");
    error.set_message("callback is not defined");
    return ErrorStatus(error);
  }

 private:
  const Closure* closure_;
};

TEST(Closure, CallbackIdsInCallArgumentsResolveToTheClosure) {
  Recorder recorder;
  const v1::Type int_type = ScalarType(v1::INT);
  const v1::Signature callback_signature = Sig(&int_type, {int_type});
  auto add_one = MakeClosure(callback_signature, &recorder, [](const v1::CallbackInvoke& invoke) {
    return IntValue(invoke.args(0).int_value() + 1);
  });
  v1::Type function_type;
  *function_type.mutable_function() = callback_signature;
  absl::StatusOr<std::unique_ptr<PreparedFunction>> apply =
      PreparedFunction::Create(reinterpret_cast<void*>(&ApplyTwiceForClosureTest),
                               Sig(&int_type, {function_type, int_type}), TypeLimits());
  ASSERT_OK(apply);
  OneCallback resolver(add_one.get());
  v1::Call call;
  call.add_args()->mutable_pointer()->set_callback(1);
  *call.add_args() = IntValue(40);
  absl::StatusOr<v1::CallResult> result = (*apply)->Invoke(call, kGeneration, &resolver);
  ASSERT_OK(result);
  EXPECT_EQ(result->result().int_value(), 42);

  call.mutable_args(0)->mutable_pointer()->set_callback(2);
  result = (*apply)->Invoke(call, kGeneration, &resolver);
  EXPECT_THAT(result.status(), StatusIs(v1::NOT_FOUND));
  EXPECT_EQ(ToProtoError(result.status()).field(), "call.args[0].pointer.callback");
}

TEST(Closure, BytesAfterAPointeeStopAtTheEndOfTheRunningCallsBlockThatHoldsIt) {
  std::memset(g_outside_blocks, 'o', sizeof g_outside_blocks);
  std::vector<std::string> seen;  // each invocation's pointee and following bytes
  Recorder recorder;
  recorder.buffer_bytes = 256;
  const v1::Signature fill_signature = Sig(nullptr, {PointerTo(ScalarType(v1::UCHAR))});
  auto fill = MakeClosure(fill_signature, &recorder, [&seen](const v1::CallbackInvoke& invoke) {
    seen.push_back(invoke.pointees_size() == 1
                       ? invoke.pointees(0).data() + invoke.pointees(0).following()
                       : "(nothing shipped)");
    return v1::Value();
  });
  v1::Type function_type;
  *function_type.mutable_function() = fill_signature;
  absl::StatusOr<std::unique_ptr<PreparedFunction>> fill_twice = PreparedFunction::Create(
      reinterpret_cast<void*>(&FillTwiceForClosureTest),
      Sig(nullptr, {function_type, PointerTo(ScalarType(v1::UCHAR))}), TypeLimits());
  ASSERT_OK(fill_twice);
  OneCallback resolver(fill.get());
  v1::Call call;
  call.add_args()->mutable_pointer()->set_callback(1);
  *call.add_args() = BlockPointer(0);
  v1::MemoryBlock* block = call.add_blocks();
  block->set_data(std::string(40, 'b'));
  block->set_direction(v1::IN);
  ASSERT_OK((*fill_twice)->Invoke(call, kGeneration, &resolver));
  // 8 bytes into a block of 40: the 32 up to its end, not what the arena holds after it.
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], std::string(32, 'b'));
  // Memory no block holds: as far as asked.
  EXPECT_EQ(seen[1], std::string(256, 'o'));
}

}  // namespace
}  // namespace ffibox
