#include "core/call.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <cwchar>
#include <optional>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/test_types.h"
#include "tests/support/status_matchers.h"

// Native functions the tests call through libffi.
extern "C" {
#define FFIBOX_ECHO(name, T) \
  T name(T v) { return v; }
FFIBOX_ECHO(echo_char, char)
FFIBOX_ECHO(echo_schar, signed char)
FFIBOX_ECHO(echo_uchar, unsigned char)
FFIBOX_ECHO(echo_short, short)
FFIBOX_ECHO(echo_ushort, unsigned short)
FFIBOX_ECHO(echo_int, int)
FFIBOX_ECHO(echo_uint, unsigned int)
FFIBOX_ECHO(echo_long, long)
FFIBOX_ECHO(echo_ulong, unsigned long)
FFIBOX_ECHO(echo_longlong, long long)
FFIBOX_ECHO(echo_ulonglong, unsigned long long)
FFIBOX_ECHO(echo_int8, int8_t)
FFIBOX_ECHO(echo_uint8, uint8_t)
FFIBOX_ECHO(echo_int16, int16_t)
FFIBOX_ECHO(echo_uint16, uint16_t)
FFIBOX_ECHO(echo_int32, int32_t)
FFIBOX_ECHO(echo_uint32, uint32_t)
FFIBOX_ECHO(echo_int64, int64_t)
FFIBOX_ECHO(echo_uint64, uint64_t)
FFIBOX_ECHO(echo_size_t, size_t)
FFIBOX_ECHO(echo_ssize_t, ssize_t)
FFIBOX_ECHO(echo_wchar, wchar_t)
#undef FFIBOX_ECHO

bool negate_bool(bool b) { return !b; }
unsigned char wrap_uchar(unsigned char a, unsigned char b) { return a + b; }
signed char negate_schar(signed char c) { return -c; }
float half_float(float f) { return f / 2; }
double add_doubles(double a, double b) { return a + b; }
long double third_long_double(long double x) { return x / 3; }
int sum_mixed(char c, short s, int i, long l, float f, double d) {
  return c + s + i + static_cast<int>(l) + static_cast<int>(f) + static_cast<int>(d);
}
void* advance_pointer(void* p, int n) { return static_cast<char*>(p) + n; }
void* null_pointer() { return nullptr; }
const char* greeting() { return "hello, world"; }
const char* null_string() { return nullptr; }
const char* bad_string() { return reinterpret_cast<const char*>(16); }
size_t string_length(const char* s) { return std::strlen(s); }
const wchar_t* wide_greeting() { return L"h\u00e9llo \u20ac\U0001F600"; }
const wchar_t* bad_wide_string() {
  static const wchar_t text[] = {L'a', static_cast<wchar_t>(0x110000), 0};
  return text;
}
size_t wide_length(const wchar_t* s) { return std::wcslen(s); }
wchar_t wide_at(const wchar_t* s, int i) { return s[i]; }
void fill_letters(char* buffer, size_t n) {
  for (size_t i = 0; i < n; ++i) buffer[i] = static_cast<char>('a' + i % 26);
}
int sum_ints(const int* values, size_t n) {
  int sum = 0;
  for (size_t i = 0; i < n; ++i) sum += values[i];
  return sum;
}
void double_ints(int* values, size_t n) {
  for (size_t i = 0; i < n; ++i) values[i] *= 2;
}
struct Node {
  int value;
  const Node* next;
};
int sum_list(const Node* node) {
  int sum = 0;
  for (; node != nullptr; node = node->next) sum += node->value;
  return sum;
}
int fail_with_errno(int code) {
  errno = code;
  return -1;
}
int current_errno() { return errno; }
struct Pair {
  int a;
  double b;
};
double pair_sum(Pair p) { return p.a + p.b; }
Pair make_pair(int a, double b) { return Pair{a, b}; }
void do_nothing() {}
}

namespace ffibox {
namespace {

using testing::ArrayOf;
using testing::BlockPointer;
using testing::BoolValue;
using testing::BytesValue;
using testing::FloatValue;
using testing::IntValue;
using testing::MakeField;
using testing::NullPointer;
using testing::PointerTo;
using testing::RemotePointer;
using testing::ScalarType;
using testing::Struct;
using testing::TextValue;
using testing::UintValue;

constexpr uint64_t kGeneration = 7;

template <typename F>
void* Address(F* function) {
  return reinterpret_cast<void*>(function);
}

v1::Signature Sig(const v1::Type& result, std::vector<v1::Type> params, bool variadic = false) {
  v1::Signature sig;
  if (!(result.kind_case() == v1::Type::kScalar && result.scalar() == v1::VOID)) {
    *sig.mutable_result() = result;
  }
  for (const v1::Type& p : params) *sig.add_params() = p;
  sig.set_variadic(variadic);
  return sig;
}

v1::Signature Sig(v1::Scalar result, std::vector<v1::Scalar> params) {
  std::vector<v1::Type> types;
  for (v1::Scalar p : params) types.push_back(ScalarType(p));
  return Sig(ScalarType(result), types);
}

std::unique_ptr<PreparedFunction> Prepare(void* address, const v1::Signature& sig) {
  absl::StatusOr<std::unique_ptr<PreparedFunction>> function =
      PreparedFunction::Create(address, sig, TypeLimits());
  EXPECT_TRUE(function.ok()) << function.status();
  return function.ok() ? std::move(*function) : nullptr;
}

v1::Call MakeCall(std::vector<v1::Value> args) {
  v1::Call call;
  for (const v1::Value& v : args) *call.add_args() = v;
  return call;
}

absl::StatusOr<v1::CallResult> Invoke(const PreparedFunction& function,
                                      std::vector<v1::Value> args) {
  return function.Invoke(MakeCall(args), kGeneration);
}

v1::Value MustCall(void* address, const v1::Signature& sig, std::vector<v1::Value> args) {
  std::unique_ptr<PreparedFunction> function = Prepare(address, sig);
  if (function == nullptr) return v1::Value();
  absl::StatusOr<v1::CallResult> result = Invoke(*function, args);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? result->result() : v1::Value();
}

std::string FieldOf(const absl::Status& status) { return ToProtoError(status).field(); }

v1::MemoryBlock Block(const std::string& data, uint64_t size, v1::Direction direction) {
  v1::MemoryBlock block;
  block.set_data(data);
  block.set_size(size);
  block.set_direction(direction);
  return block;
}

struct IntegerCase {
  const char* name;
  void* function;
  v1::Scalar scalar;
  int64_t min;
  uint64_t max;
};

TEST(PreparedFunctionTest, EveryIntegerTypeRoundTripsItsWholeRangeAndRefusesOneBeyond) {
  const IntegerCase cases[] = {
      {"char", Address(echo_char), v1::CHAR, -128, 127},
      {"schar", Address(echo_schar), v1::SCHAR, -128, 127},
      {"uchar", Address(echo_uchar), v1::UCHAR, 0, 255},
      {"short", Address(echo_short), v1::SHORT, INT16_MIN, INT16_MAX},
      {"ushort", Address(echo_ushort), v1::USHORT, 0, UINT16_MAX},
      {"int", Address(echo_int), v1::INT, INT32_MIN, INT32_MAX},
      {"uint", Address(echo_uint), v1::UINT, 0, UINT32_MAX},
      {"long", Address(echo_long), v1::LONG, INT64_MIN, INT64_MAX},
      {"ulong", Address(echo_ulong), v1::ULONG, 0, UINT64_MAX},
      {"longlong", Address(echo_longlong), v1::LONGLONG, INT64_MIN, INT64_MAX},
      {"ulonglong", Address(echo_ulonglong), v1::ULONGLONG, 0, UINT64_MAX},
      {"int8", Address(echo_int8), v1::INT8, INT8_MIN, INT8_MAX},
      {"uint8", Address(echo_uint8), v1::UINT8, 0, UINT8_MAX},
      {"int16", Address(echo_int16), v1::INT16, INT16_MIN, INT16_MAX},
      {"uint16", Address(echo_uint16), v1::UINT16, 0, UINT16_MAX},
      {"int32", Address(echo_int32), v1::INT32, INT32_MIN, INT32_MAX},
      {"uint32", Address(echo_uint32), v1::UINT32, 0, UINT32_MAX},
      {"int64", Address(echo_int64), v1::INT64, INT64_MIN, INT64_MAX},
      {"uint64", Address(echo_uint64), v1::UINT64, 0, UINT64_MAX},
      {"size_t", Address(echo_size_t), v1::SIZE_T, 0, SIZE_MAX},
      {"ssize_t", Address(echo_ssize_t), v1::SSIZE_T, INT64_MIN, INT64_MAX},
      {"wchar", Address(echo_wchar), v1::WCHAR, INT32_MIN, INT32_MAX},
  };
  for (const IntegerCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::unique_ptr<PreparedFunction> f = Prepare(c.function, Sig(c.scalar, {c.scalar}));
    ASSERT_NE(f, nullptr);
    const bool is_signed = c.min < 0;
    absl::StatusOr<v1::CallResult> low = Invoke(*f, {IntValue(c.min)});
    ASSERT_OK(low);
    absl::StatusOr<v1::CallResult> high = Invoke(*f, {UintValue(c.max)});
    ASSERT_OK(high);
    if (is_signed) {
      EXPECT_EQ(low->result().int_value(), c.min);
      EXPECT_EQ(static_cast<uint64_t>(high->result().int_value()), c.max);
    } else {
      EXPECT_EQ(low->result().uint_value(), 0u);
      EXPECT_EQ(high->result().uint_value(), c.max);
    }
    if (c.max < UINT64_MAX) {
      absl::Status above = Invoke(*f, {UintValue(c.max + 1)}).status();
      EXPECT_EQ(FieldOf(above), "call.args[0]") << above;
    }
    if (c.min > INT64_MIN) {
      absl::Status below = Invoke(*f, {IntValue(c.min - 1)}).status();
      EXPECT_EQ(FieldOf(below), "call.args[0]") << below;
    }
  }
}

TEST(PreparedFunctionTest, SmallIntegerResultsAreTruncatedToTheCType) {
  EXPECT_EQ(MustCall(Address(wrap_uchar), Sig(v1::UCHAR, {v1::UCHAR, v1::UCHAR}),
                     {UintValue(200), UintValue(100)})
                .uint_value(),
            44u);
  EXPECT_EQ(MustCall(Address(negate_schar), Sig(v1::SCHAR, {v1::SCHAR}), {IntValue(5)}).int_value(),
            -5);
}

TEST(PreparedFunctionTest, CharAcceptsOneByteAndBoolAcceptsIntegers) {
  EXPECT_EQ(
      MustCall(Address(echo_char), Sig(v1::CHAR, {v1::CHAR}), {BytesValue("\xff")}).int_value(),
      -1);
  std::unique_ptr<PreparedFunction> f = Prepare(Address(echo_char), Sig(v1::CHAR, {v1::CHAR}));
  EXPECT_EQ(FieldOf(Invoke(*f, {BytesValue("ab")}).status()), "call.args[0]");
  v1::Value negated = MustCall(Address(negate_bool), Sig(v1::BOOL, {v1::BOOL}), {BoolValue(false)});
  ASSERT_EQ(negated.kind_case(), v1::Value::kBoolValue);
  EXPECT_TRUE(negated.bool_value());
  EXPECT_FALSE(
      MustCall(Address(negate_bool), Sig(v1::BOOL, {v1::BOOL}), {IntValue(42)}).bool_value());
}

TEST(PreparedFunctionTest, FloatingPointTypes) {
  EXPECT_EQ(
      MustCall(Address(half_float), Sig(v1::FLOAT, {v1::FLOAT}), {FloatValue(3.0)}).float_value(),
      1.5);
  // FLOAT arguments are rounded to float.
  EXPECT_EQ(
      MustCall(Address(half_float), Sig(v1::FLOAT, {v1::FLOAT}), {FloatValue(0.1)}).float_value(),
      static_cast<double>(0.1f / 2));
  EXPECT_EQ(MustCall(Address(add_doubles), Sig(v1::DOUBLE, {v1::DOUBLE, v1::DOUBLE}),
                     {FloatValue(0.25), IntValue(2)})
                .float_value(),
            2.25);
  EXPECT_EQ(
      MustCall(Address(third_long_double), Sig(v1::LONGDOUBLE, {v1::LONGDOUBLE}), {FloatValue(1.0)})
          .float_value(),
      static_cast<double>(1.0L / 3));
  EXPECT_EQ(MustCall(Address(sum_mixed),
                     Sig(v1::INT, {v1::CHAR, v1::SHORT, v1::INT, v1::LONG, v1::FLOAT, v1::DOUBLE}),
                     {IntValue(1), IntValue(2), IntValue(3), IntValue(4), FloatValue(5.5),
                      FloatValue(6.5)})
                .int_value(),
            21);
}

// A scalar call run from its arguments' bits gives what Invoke gives for the same call, or
// is not taken (nothing run) where Invoke refuses the call.
TEST(PreparedFunctionTest, AScalarInvokeGivesWhatInvokeGivesOrIsNotTaken) {
  struct Case {
    const char* name;
    void* function;
    v1::Signature sig;
    std::vector<v1::Value> args;
  };
  const v1::Signature echo_uchar_sig = Sig(v1::UCHAR, {v1::UCHAR});
  const v1::Signature echo_long_sig = Sig(v1::LONG, {v1::LONG});
  const v1::Signature mixed_sig =
      Sig(v1::INT, {v1::CHAR, v1::SHORT, v1::INT, v1::LONG, v1::FLOAT, v1::DOUBLE});
  const std::vector<Case> cases = {
      {"uchar", Address(echo_uchar), echo_uchar_sig, {UintValue(255)}},
      {"uchar beyond", Address(echo_uchar), echo_uchar_sig, {UintValue(256)}},
      {"uchar negative", Address(echo_uchar), echo_uchar_sig, {IntValue(-1)}},
      {"long min", Address(echo_long), echo_long_sig, {IntValue(INT64_MIN)}},
      {"long from uint beyond", Address(echo_long), echo_long_sig, {UintValue(UINT64_MAX)}},
      {"wrapping",
       Address(wrap_uchar),
       Sig(v1::UCHAR, {v1::UCHAR, v1::UCHAR}),
       {UintValue(200), UintValue(100)}},
      {"bool from int", Address(negate_bool), Sig(v1::BOOL, {v1::BOOL}), {IntValue(42)}},
      {"bool", Address(negate_bool), Sig(v1::BOOL, {v1::BOOL}), {BoolValue(false)}},
      {"float rounded", Address(half_float), Sig(v1::FLOAT, {v1::FLOAT}), {FloatValue(0.1)}},
      {"double from int",
       Address(add_doubles),
       Sig(v1::DOUBLE, {v1::DOUBLE, v1::DOUBLE}),
       {FloatValue(0.25), IntValue(2)}},
      {"long double",
       Address(third_long_double),
       Sig(v1::LONGDOUBLE, {v1::LONGDOUBLE}),
       {FloatValue(1.0)}},
      {"mixed",
       Address(sum_mixed),
       mixed_sig,
       {IntValue(1), IntValue(2), IntValue(3), IntValue(4), FloatValue(5.5), FloatValue(6.5)}},
      {"too few", Address(sum_mixed), mixed_sig, {IntValue(1)}},
      {"a pointer result", Address(null_pointer), Sig(v1::POINTER, {}), {}},
      {"a string result", Address(greeting), Sig(v1::CSTRING, {}), {}},
      {"an unreadable string result", Address(bad_string), Sig(v1::CSTRING, {}), {}},
      {"an int for a string",
       Address(string_length),
       Sig(v1::SIZE_T, {v1::CSTRING}),
       {IntValue(16)}},
  };
  int taken = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::unique_ptr<PreparedFunction> f = Prepare(c.function, c.sig);
    ASSERT_NE(f, nullptr);
    std::vector<ScalarBits> bits;
    for (const v1::Value& arg : c.args) {
      std::optional<ScalarBits> scalar = ScalarBitsOfValue(arg);
      ASSERT_TRUE(scalar.has_value());
      bits.push_back(*scalar);
    }
    const absl::StatusOr<v1::CallResult> invoked = Invoke(*f, c.args);
    v1::CallResult result;
    const std::optional<absl::Status> ran =
        f->InvokeScalar(bits, kGeneration, nullptr, nullptr, &result);
    if (!ran.has_value()) {
      // Not taken: Invoke refuses it (an argument's field named), and nothing ran.
      EXPECT_FALSE(invoked.ok());
      EXPECT_EQ(FieldOf(invoked.status()).rfind("call.args", 0), 0u) << invoked.status();
      continue;
    }
    ++taken;
    ASSERT_EQ(ran->ok(), invoked.ok()) << *ran << " / " << invoked.status();
    if (!invoked.ok()) {
      EXPECT_EQ(ran->code(), invoked.status().code());
      continue;
    }
    EXPECT_EQ(result.SerializeAsString(), invoked->SerializeAsString())
        << result.DebugString() << " / " << invoked->DebugString();
  }
  EXPECT_EQ(taken, 12);
  // A variadic function is not taken.
  std::unique_ptr<PreparedFunction> variadic =
      Prepare(dlsym(RTLD_DEFAULT, "snprintf"),
              Sig(ScalarType(v1::INT),
                  {ScalarType(v1::POINTER), ScalarType(v1::SIZE_T), ScalarType(v1::CSTRING)},
                  /*variadic=*/true));
  ASSERT_NE(variadic, nullptr);
  v1::CallResult unused;
  EXPECT_FALSE(variadic->InvokeScalar({}, kGeneration, nullptr, nullptr, &unused).has_value());
}

TEST(PreparedFunctionTest, PointersComeBackAsRemoteAddressesOfThisGeneration) {
  static char buffer[8];
  v1::Value result =
      MustCall(Address(advance_pointer), Sig(v1::POINTER, {v1::POINTER, v1::INT}),
               {RemotePointer(reinterpret_cast<uint64_t>(buffer), kGeneration), IntValue(3)});
  ASSERT_TRUE(result.pointer().has_remote());
  EXPECT_EQ(result.pointer().remote().address(), reinterpret_cast<uint64_t>(buffer + 3));
  EXPECT_EQ(result.pointer().remote().generation(), kGeneration);
  EXPECT_TRUE(MustCall(Address(null_pointer), Sig(v1::POINTER, {}), {}).pointer().null());
}

TEST(PreparedFunctionTest, AddressesOfAnotherGenerationAreStale) {
  std::unique_ptr<PreparedFunction> f =
      Prepare(Address(advance_pointer), Sig(v1::POINTER, {v1::POINTER, v1::INT}));
  absl::Status status = Invoke(*f, {RemotePointer(4096, kGeneration - 1), IntValue(0)}).status();
  EXPECT_THAT(status, StatusIs(v1::STALE_HANDLE)) << status;
}

TEST(PreparedFunctionTest, AnAddressOfGenerationZeroIsNoWorkersAndNeverStale) {
  // Generation 0: a number the caller made up (user data), which no worker handed out.
  static char buffer[8];
  v1::Value result = MustCall(Address(advance_pointer), Sig(v1::POINTER, {v1::POINTER, v1::INT}),
                              {RemotePointer(reinterpret_cast<uint64_t>(buffer), 0), IntValue(2)});
  ASSERT_TRUE(result.pointer().has_remote());
  EXPECT_EQ(result.pointer().remote().address(), reinterpret_cast<uint64_t>(buffer + 2));
}

TEST(PreparedFunctionTest, CStringsInAndOut) {
  v1::Value hello = MustCall(Address(greeting), Sig(v1::CSTRING, {}), {});
  EXPECT_EQ(hello.bytes_value(), "hello, world");
  EXPECT_TRUE(MustCall(Address(null_string), Sig(v1::CSTRING, {}), {}).pointer().null());
  EXPECT_EQ(MustCall(Address(string_length), Sig(v1::SIZE_T, {v1::CSTRING}), {BytesValue("four")})
                .uint_value(),
            4u);
  // Embedded NULs travel; C sees up to the first one.
  EXPECT_EQ(MustCall(Address(string_length), Sig(v1::SIZE_T, {v1::CSTRING}),
                     {BytesValue(std::string("ab\0cd", 5))})
                .uint_value(),
            2u);
  std::unique_ptr<PreparedFunction> bad = Prepare(Address(bad_string), Sig(v1::CSTRING, {}));
  EXPECT_THAT(Invoke(*bad, {}).status(), StatusIs(v1::MEMORY_FAULT));
}

TEST(PreparedFunctionTest, WideStringsInAndOut) {
  v1::Value text = MustCall(Address(wide_greeting), Sig(v1::WSTRING, {}), {});
  EXPECT_EQ(text.text_value(), "h\u00e9llo \u20ac\U0001F600");
  EXPECT_EQ(MustCall(Address(wide_length), Sig(v1::SIZE_T, {v1::WSTRING}),
                     {TextValue("\u20ac\U0001F600x")})
                .uint_value(),
            3u);
  EXPECT_EQ(MustCall(Address(wide_at), Sig(v1::WCHAR, {v1::WSTRING, v1::INT}),
                     {TextValue("a\U0001F600"), IntValue(1)})
                .int_value(),
            0x1F600);
  std::unique_ptr<PreparedFunction> len =
      Prepare(Address(wide_length), Sig(v1::SIZE_T, {v1::WSTRING}));
  EXPECT_EQ(FieldOf(Invoke(*len, {TextValue("\xc3\x28")}).status()), "call.args[0]");
  // A string that is not text comes back as its address, for the client to read raw.
  const v1::Value bad = MustCall(Address(bad_wide_string), Sig(v1::WSTRING, {}), {});
  ASSERT_TRUE(bad.pointer().has_remote()) << bad.DebugString();
  EXPECT_EQ(bad.pointer().remote().address(), reinterpret_cast<uintptr_t>(bad_wide_string()));
  EXPECT_EQ(bad.pointer().remote().generation(), kGeneration);
}

TEST(PreparedFunctionTest, OutBlockIsZeroFilledAndCopiedBack) {
  std::unique_ptr<PreparedFunction> f =
      Prepare(Address(fill_letters),
              Sig(ScalarType(v1::VOID), {PointerTo(ScalarType(v1::CHAR)), ScalarType(v1::SIZE_T)}));
  v1::Call call = MakeCall({BlockPointer(0, 2), UintValue(3)});
  *call.add_blocks() = Block("", 6, v1::OUT);
  absl::StatusOr<v1::CallResult> result = f->Invoke(call, kGeneration);
  ASSERT_OK(result);
  EXPECT_FALSE(result->has_result());
  ASSERT_EQ(result->blocks_size(), 1);
  EXPECT_EQ(result->blocks(0).block(), 0u);
  EXPECT_EQ(result->blocks(0).data(), std::string("\0\0abc\0", 6));
}

TEST(PreparedFunctionTest, InBlocksAreReadAndInoutBlocksCopiedBack) {
  int values[] = {1, 2, 3, 4};
  std::string bytes(reinterpret_cast<const char*>(values), sizeof values);
  // An array parameter decays to a pointer.
  std::unique_ptr<PreparedFunction> sum =
      Prepare(Address(sum_ints),
              Sig(ScalarType(v1::INT), {ArrayOf(ScalarType(v1::INT), 4), ScalarType(v1::SIZE_T)}));
  v1::Call in_call = MakeCall({BlockPointer(0), UintValue(4)});
  *in_call.add_blocks() = Block(bytes, 0, v1::IN);
  absl::StatusOr<v1::CallResult> summed = sum->Invoke(in_call, kGeneration);
  ASSERT_OK(summed);
  EXPECT_EQ(summed->result().int_value(), 10);
  EXPECT_EQ(summed->blocks_size(), 0);  // IN blocks are not sent back

  std::unique_ptr<PreparedFunction> twice =
      Prepare(Address(double_ints),
              Sig(ScalarType(v1::VOID), {PointerTo(ScalarType(v1::INT)), ScalarType(v1::SIZE_T)}));
  v1::Call inout_call = MakeCall({BlockPointer(0), UintValue(4)});
  // Unspecified direction means INOUT; a size beyond the data is zero-filled.
  *inout_call.add_blocks() = Block(bytes, sizeof values + 4, v1::DIRECTION_UNSPECIFIED);
  absl::StatusOr<v1::CallResult> doubled = twice->Invoke(inout_call, kGeneration);
  ASSERT_OK(doubled);
  ASSERT_EQ(doubled->blocks_size(), 1);
  int back[5];
  ASSERT_EQ(doubled->blocks(0).data().size(), sizeof back);
  std::memcpy(back, doubled->blocks(0).data().data(), sizeof back);
  EXPECT_EQ(back[0], 2);
  EXPECT_EQ(back[3], 8);
  EXPECT_EQ(back[4], 0);
}

// Blocks in a same-host channel's shared area: the library works on the area's bytes where
// the client put them, an OUT block starts zeroed there, the result marks them `shared`
// without their bytes, and a pointer into one (a relocation from a framed block) is its
// address in the area. Without an area such a block is refused before anything runs.
TEST(PreparedFunctionTest, SharedBlocksAreUsedWhereTheyAre) {
  alignas(16) static char area[8192];
  std::memset(area, 'z', sizeof area);
  std::unique_ptr<PreparedFunction> twice =
      Prepare(Address(double_ints),
              Sig(ScalarType(v1::VOID), {PointerTo(ScalarType(v1::INT)), ScalarType(v1::SIZE_T)}));
  int values[] = {1, 2, 3, 4};
  std::memcpy(area + 4096, values, sizeof values);
  v1::Call call = MakeCall({BlockPointer(0), UintValue(4)});
  v1::MemoryBlock* inout = call.add_blocks();
  inout->set_size(sizeof values);
  inout->set_direction(v1::INOUT);
  inout->set_shared_offset(4096);
  const absl::Span<char> shared(area, sizeof area);
  v1::CallResult doubled_result;
  ASSERT_OK(twice->Invoke(call, kGeneration, nullptr, nullptr, &doubled_result, true, shared));
  const v1::CallResult* doubled = &doubled_result;
  ASSERT_EQ(doubled->blocks_size(), 1);
  EXPECT_TRUE(doubled->blocks(0).shared());
  EXPECT_TRUE(doubled->blocks(0).data().empty());
  int back[4];
  std::memcpy(back, area + 4096, sizeof back);
  EXPECT_EQ(back[0], 2);
  EXPECT_EQ(back[3], 8);

  std::unique_ptr<PreparedFunction> fill =
      Prepare(Address(fill_letters),
              Sig(ScalarType(v1::VOID), {PointerTo(ScalarType(v1::CHAR)), ScalarType(v1::SIZE_T)}));
  v1::Call out_call = MakeCall({BlockPointer(1, 2), UintValue(3)});
  v1::MemoryBlock* framed = out_call.add_blocks();  // holds a pointer to the shared block
  framed->set_size(8);
  framed->set_direction(v1::INOUT);
  framed->add_relocations()->mutable_target()->set_block(1);
  v1::MemoryBlock* out = out_call.add_blocks();
  out->set_size(6);
  out->set_direction(v1::OUT);
  out->set_shared_offset(0);
  v1::CallResult filled_result;
  ASSERT_OK(fill->Invoke(out_call, kGeneration, nullptr, nullptr, &filled_result, true, shared));
  const v1::CallResult* filled = &filled_result;
  EXPECT_EQ(std::string(area, 7), std::string("\0\0abc\0z", 7));
  ASSERT_EQ(filled->blocks_size(), 2);
  ASSERT_EQ(filled->blocks(0).pointers_size(), 1);
  EXPECT_EQ(filled->blocks(0).pointers(0).target().block(), 1u);
  uint64_t pointer = 0;
  std::memcpy(&pointer, filled->blocks(0).data().data(), sizeof pointer);
  EXPECT_EQ(pointer, reinterpret_cast<uint64_t>(area));
  EXPECT_TRUE(filled->blocks(1).shared());

  absl::Status refused = fill->Invoke(out_call, kGeneration).status();
  EXPECT_EQ(FieldOf(refused), "call.blocks[1].shared_offset") << refused;
}

TEST(PreparedFunctionTest, RelocationsLinkBlocksIntoAListTheFunctionWalks) {
  std::unique_ptr<PreparedFunction> f =
      Prepare(Address(sum_list), Sig(ScalarType(v1::INT), {ScalarType(v1::POINTER)}));
  Node first{10, nullptr};
  Node second{32, nullptr};
  v1::Call call = MakeCall({BlockPointer(0)});
  v1::MemoryBlock* head = call.add_blocks();
  *head = Block(std::string(reinterpret_cast<const char*>(&first), sizeof first), 0, v1::IN);
  v1::Relocation* link = head->add_relocations();
  link->set_offset(offsetof(Node, next));
  link->mutable_target()->set_block(1);
  *call.add_blocks() =
      Block(std::string(reinterpret_cast<const char*>(&second), sizeof second), 0, v1::IN);
  absl::StatusOr<v1::CallResult> result = f->Invoke(call, kGeneration);
  ASSERT_OK(result);
  EXPECT_EQ(result->result().int_value(), 42);

  link->set_offset(sizeof(Node) - 4);  // the pointer would not fit in the block
  EXPECT_EQ(FieldOf(f->Invoke(call, kGeneration).status()), "call.blocks[0].relocations[0].offset");
  link->set_offset(offsetof(Node, next));
  link->mutable_target()->set_block(5);
  EXPECT_EQ(FieldOf(f->Invoke(call, kGeneration).status()),
            "call.blocks[0].relocations[0].target.block");
  link->mutable_target()->set_block(1);
  link->mutable_target()->set_offset(sizeof(Node) + 1);
  EXPECT_EQ(FieldOf(f->Invoke(call, kGeneration).status()),
            "call.blocks[0].relocations[0].target.offset");
}

TEST(PreparedFunctionTest, BadBlocksAreRefusedWithTheirPath) {
  std::unique_ptr<PreparedFunction> f =
      Prepare(Address(sum_list), Sig(ScalarType(v1::INT), {ScalarType(v1::POINTER)}));
  v1::Call call = MakeCall({BlockPointer(1)});
  *call.add_blocks() = Block("abcd", 0, v1::IN);
  EXPECT_EQ(FieldOf(f->Invoke(call, kGeneration).status()), "call.args[0].pointer.block.block");
  *call.mutable_args(0) = BlockPointer(0, 5);
  EXPECT_EQ(FieldOf(f->Invoke(call, kGeneration).status()), "call.args[0].pointer.block.offset");
  *call.mutable_args(0) = BlockPointer(0, 0);
  *call.mutable_blocks(0) = Block("abcd", 2, v1::IN);
  EXPECT_EQ(FieldOf(f->Invoke(call, kGeneration).status()), "call.blocks[0].data");
  *call.mutable_blocks(0) = Block("", 1ull << 40, v1::OUT);
  absl::Status huge = f->Invoke(call, kGeneration).status();
  EXPECT_THAT(huge, StatusIs(v1::RESOURCE_EXHAUSTED));
  EXPECT_NE(huge.message().find("call.blocks[0]"), absl::string_view::npos) << huge;
  call.mutable_blocks(0)->set_size(8);
  call.mutable_blocks(0)->set_direction(static_cast<v1::Direction>(9));
  EXPECT_EQ(FieldOf(f->Invoke(call, kGeneration).status()), "call.blocks[0].direction");
}

TEST(PreparedFunctionTest, WrongArgumentCountOrKindNamesTheField) {
  std::unique_ptr<PreparedFunction> f =
      Prepare(Address(add_doubles), Sig(v1::DOUBLE, {v1::DOUBLE, v1::DOUBLE}));
  EXPECT_EQ(FieldOf(Invoke(*f, {FloatValue(1)}).status()), "call.args");
  EXPECT_EQ(FieldOf(Invoke(*f, {FloatValue(1), BytesValue("x")}).status()), "call.args[1]");
  EXPECT_EQ(FieldOf(Invoke(*f, {FloatValue(1), v1::Value()}).status()), "call.args[1]");
  v1::Call call = MakeCall({FloatValue(1), FloatValue(2)});
  *call.add_variadic_types() = ScalarType(v1::INT);
  EXPECT_EQ(FieldOf(f->Invoke(call, kGeneration).status()), "call.variadic_types");
  std::unique_ptr<PreparedFunction> p =
      Prepare(Address(advance_pointer), Sig(v1::POINTER, {v1::POINTER, v1::INT}));
  EXPECT_EQ(FieldOf(Invoke(*p, {IntValue(5), IntValue(0)}).status()), "call.args[0]");
  v1::Value callback;
  callback.mutable_pointer()->set_callback(1);
  EXPECT_THAT(Invoke(*p, {callback, IntValue(0)}).status(), StatusIs(v1::UNIMPLEMENTED));
}

TEST(PreparedFunctionTest, VariadicSnprintfPromotesItsArguments) {
  void* snprintf_address = dlsym(RTLD_DEFAULT, "snprintf");
  ASSERT_NE(snprintf_address, nullptr);
  std::unique_ptr<PreparedFunction> f = Prepare(
      snprintf_address,
      Sig(ScalarType(v1::INT),
          {ScalarType(v1::POINTER), ScalarType(v1::SIZE_T), ScalarType(v1::CSTRING)}, true));
  v1::Call call =
      MakeCall({BlockPointer(0), UintValue(64), BytesValue("%d %s %.2f %.1f %c %u %hd %ld"),
                IntValue(-42), BytesValue("str"), FloatValue(3.14159), FloatValue(2.5),
                BytesValue("Z"), UintValue(255), IntValue(-7), IntValue(1234567890123)});
  for (v1::Scalar s :
       {v1::INT, v1::CSTRING, v1::DOUBLE, v1::FLOAT, v1::CHAR, v1::UCHAR, v1::SHORT, v1::LONG}) {
    *call.add_variadic_types() = ScalarType(s);
  }
  *call.add_blocks() = Block("", 64, v1::OUT);
  absl::StatusOr<v1::CallResult> result = f->Invoke(call, kGeneration);
  ASSERT_OK(result);
  const std::string expected = "-42 str 3.14 2.5 Z 255 -7 1234567890123";
  EXPECT_EQ(result->result().int_value(), static_cast<int64_t>(expected.size()));
  EXPECT_EQ(result->blocks(0).data().substr(0, expected.size() + 1),
            std::string(expected.c_str(), expected.size() + 1));

  call.mutable_variadic_types(0)->set_scalar(v1::VOID);
  EXPECT_EQ(FieldOf(f->Invoke(call, kGeneration).status()), "call.variadic_types[0]");
  call.mutable_variadic_types(0)->set_scalar(v1::INT);
  call.mutable_variadic_types()->RemoveLast();
  EXPECT_EQ(FieldOf(f->Invoke(call, kGeneration).status()), "call.args");
}

TEST(PreparedFunctionTest, ErrnoIsSetBeforeAndCapturedAfterTheCall) {
  std::unique_ptr<PreparedFunction> fail =
      Prepare(Address(fail_with_errno), Sig(v1::INT, {v1::INT}));
  v1::Call call = MakeCall({IntValue(ERANGE)});
  call.set_capture_errno(true);
  absl::StatusOr<v1::CallResult> result = fail->Invoke(call, kGeneration);
  ASSERT_TRUE(result.ok());
  ASSERT_TRUE(result->has_errno_value());
  EXPECT_EQ(result->errno_value(), ERANGE);

  std::unique_ptr<PreparedFunction> read = Prepare(Address(current_errno), Sig(v1::INT, {}));
  v1::Call set = MakeCall({});
  set.set_set_errno(EAGAIN);
  result = read->Invoke(set, kGeneration);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->result().int_value(), EAGAIN);
  EXPECT_FALSE(result->has_errno_value());
}

TEST(PreparedFunctionTest, StructsByValueTravelAsRawBytes) {
  v1::Type pair =
      Struct({MakeField("a", ScalarType(v1::INT)), MakeField("b", ScalarType(v1::DOUBLE))});
  Pair value{2, 0.5};
  v1::Value raw;
  raw.set_raw(std::string(reinterpret_cast<const char*>(&value), sizeof value));
  EXPECT_EQ(MustCall(Address(pair_sum), Sig(ScalarType(v1::DOUBLE), {pair}), {raw}).float_value(),
            2.5);
  v1::Value made =
      MustCall(Address(make_pair), Sig(pair, {ScalarType(v1::INT), ScalarType(v1::DOUBLE)}),
               {IntValue(7), FloatValue(1.25)});
  ASSERT_EQ(made.raw().size(), sizeof(Pair));
  Pair back;
  std::memcpy(&back, made.raw().data(), sizeof back);
  EXPECT_EQ(back.a, 7);
  EXPECT_EQ(back.b, 1.25);

  std::unique_ptr<PreparedFunction> f =
      Prepare(Address(pair_sum), Sig(ScalarType(v1::DOUBLE), {pair}));
  raw.set_raw("short");
  EXPECT_EQ(FieldOf(Invoke(*f, {raw}).status()), "call.args[0].raw");
}

TEST(PreparedFunctionTest, LongDoubleInsideAUnionByValueIsUnimplementedNotWrong) {
  v1::Type u = testing::Union(
      {MakeField("a", ScalarType(v1::INT)), MakeField("b", ScalarType(v1::LONGDOUBLE))});
  EXPECT_EQ(ErrorCodeOf(PreparedFunction::Create(Address(pair_sum),
                                                 Sig(ScalarType(v1::DOUBLE), {u}), TypeLimits())
                            .status()),
            v1::UNIMPLEMENTED);
}

TEST(PreparedFunctionTest, BadSignaturesAreRefusedAtCreate) {
  absl::Status status = PreparedFunction::Create(Address(do_nothing),
                                                 Sig(v1::VOID, {v1::INT, v1::VOID}), TypeLimits())
                            .status();
  EXPECT_EQ(FieldOf(status), "signature.params[1]");
  EXPECT_TRUE(Prepare(Address(do_nothing), Sig(v1::VOID, {})) != nullptr);
}

}  // namespace
}  // namespace ffibox
