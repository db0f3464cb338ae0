// Remote memory through a real ffiboxd: worker addresses are read, written, allocated,
// filled and copied, raw and as typed values, without ever crashing the worker, and refused
// once their worker is gone; exported variables are read and written.
#include <array>
#include <memory>
#include <string>

#include "client/cpp/ffibox_client.h"
#include "gtest/gtest.h"
#include "tests/integration/shapes_fixture.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

using test_support::TestLibPath;
using test_support::TestServer;

v1::RemoteAddress Remote(RemotePtr pointer) {
  v1::RemoteAddress address;
  address.set_address(pointer.address);
  address.set_generation(pointer.generation);
  return address;
}

class RemoteMemoryTest : public test_support::ShapesTest {
 protected:
  RemotePtr Alloc(size_t size) {
    absl::StatusOr<RemotePtr> memory = session_->AllocMemory(size);
    EXPECT_TRUE(memory.ok()) << memory.status();
    return memory.ok() ? *memory : RemotePtr();
  }
};

TEST_F(RemoteMemoryTest, AllocatedMemoryIsZeroedWritableReadableAndFreed) {
  RemotePtr memory = Alloc(64);
  EXPECT_EQ(memory.address % 16, 0u);
  EXPECT_EQ(*session_->ReadMemory(memory, 8), std::string(8, '\0'));
  ASSERT_TRUE(session_->WriteMemory(memory, "hello").ok());
  EXPECT_EQ(*session_->ReadMemory(memory, 5), "hello");
  EXPECT_EQ(*session_->ReadCString(memory), "hello");
  EXPECT_TRUE(session_->FreeMemory(memory).ok());
  // A second free is refused, not a double free in the worker.
  EXPECT_EQ(ErrorOf(session_->FreeMemory(memory)).code(), v1::NOT_FOUND);
}

TEST_F(RemoteMemoryTest, FillAndOverlappingCopyBehaveLikeMemsetAndMemmove) {
  RemotePtr memory = Alloc(16);
  ASSERT_TRUE(session_->WriteMemory(memory, "abcdefgh").ok());
  v1::Request copy;
  *copy.mutable_copy_memory()->mutable_destination() = Remote(memory.Offset(2));
  *copy.mutable_copy_memory()->mutable_source() = Remote(memory);
  copy.mutable_copy_memory()->set_size(6);
  ASSERT_TRUE(session_->Send(copy).ok());
  EXPECT_EQ(*session_->ReadMemory(memory, 8), "ababcdef");

  v1::Request fill;
  *fill.mutable_fill_memory()->mutable_address() = Remote(memory.Offset(4));
  fill.mutable_fill_memory()->set_byte('z');
  fill.mutable_fill_memory()->set_size(3);
  ASSERT_TRUE(session_->Send(fill).ok());
  EXPECT_EQ(*session_->ReadMemory(memory, 8), "ababzzzf");
}

TEST_F(RemoteMemoryTest, WideStringsAreReadAsUtf8) {
  absl::StatusOr<TypedFunction<void*()>> wgreeting = lib_->Function<void*()>("wgreeting");
  ASSERT_OK(wgreeting);
  absl::StatusOr<RemotePtr> text = (*wgreeting)();
  ASSERT_OK(text);
  v1::Request read;
  *read.mutable_read_string()->mutable_address() = Remote(*text);
  read.mutable_read_string()->set_wide(true);
  absl::StatusOr<v1::Response> response = session_->Send(read);
  ASSERT_OK(response);
  EXPECT_EQ(response->string().text(), "h\u00e9llo \u4e16\u754c");
}

TEST_F(RemoteMemoryTest, WideStringsThatAreNoTextAreReadUnitByUnit) {
  // A lone surrogate has no UTF-8: the result comes as the string's address, and the
  // client reads its units raw, as a result and through ReadWString alike.
  absl::StatusOr<std::u32string> lone = Fn<std::u32string(int)>("odd_wide")(0);
  ASSERT_OK(lone);
  EXPECT_EQ(*lone, (std::u32string{U'A', char32_t{0xD800}, U'B'}));
  absl::StatusOr<std::u32string> past = Fn<std::u32string(int)>("odd_wide")(1);
  ASSERT_OK(past);
  EXPECT_EQ(*past, (std::u32string{U'A', char32_t{0x110000}, U'B'}));
  absl::StatusOr<RemotePtr> address = Fn<RemotePtr(int)>("odd_wide")(0);
  ASSERT_OK(address);
  absl::StatusOr<std::u32string> read = session_->ReadWString(*address);
  ASSERT_OK(read);
  EXPECT_EQ(*read, (std::u32string{U'A', char32_t{0xD800}, U'B'}));
  ExpectSessionStillServes();
}

TEST_F(RemoteMemoryTest, BadAddressIsMemoryFaultAndTheWorkerSurvives) {
  RemotePtr bad(0x10, session_->generation());
  EXPECT_EQ(ErrorOf(session_->ReadMemory(bad, 4).status()).code(), v1::MEMORY_FAULT);
  EXPECT_EQ(ErrorOf(session_->WriteMemory(bad, "x")).code(), v1::MEMORY_FAULT);
  EXPECT_EQ(ErrorOf(session_->ReadCString(bad).status()).code(), v1::MEMORY_FAULT);
  RemotePtr memory = Alloc(8);
  EXPECT_EQ(session_->generation(), 1u) << "the worker restarted: the fault crashed it";
  EXPECT_TRUE(session_->FreeMemory(memory).ok());
}

// NULL (a RemotePtr made from nullptr has generation 0) is a memory fault naming NULL, not
// an address of an earlier worker.
TEST_F(RemoteMemoryTest, NullIsAMemoryFaultNamingNull) {
  const RemotePtr null(nullptr);
  RemotePtr memory = Alloc(8);
  std::vector<absl::Status> failed = {session_->ReadMemory(null, 4).status(),
                                      session_->Read<int>(null).status(),
                                      session_->ReadCString(null).status(),
                                      session_->WriteMemory(null, "x"),
                                      session_->FreeMemory(null),
                                      session_->CopyMemory(null, memory, 4),
                                      session_->CopyMemory(memory, null, 4)};
  for (const absl::Status& status : failed) {
    EXPECT_EQ(ErrorOf(status).code(), v1::MEMORY_FAULT) << status;
    EXPECT_NE(status.message().find("NULL"), absl::string_view::npos) << status;
  }
  EXPECT_EQ(session_->generation(), 1u);
  EXPECT_TRUE(session_->FreeMemory(memory).ok());
}

TEST_F(RemoteMemoryTest, AddressesOfADeadWorkerAreStale) {
  RemotePtr memory = Alloc(8);
  absl::StatusOr<TypedFunction<int()>> crash = lib_->Function<int()>("crash_abort");
  ASSERT_TRUE(crash.ok());
  EXPECT_EQ(ErrorOf((*crash)().status()).code(), v1::WORKER_CRASHED);
  absl::StatusOr<std::string> read = session_->ReadMemory(memory, 8);
  EXPECT_EQ(ErrorOf(read.status()).code(), v1::STALE_HANDLE) << read.status();
  EXPECT_EQ(session_->generation(), 2u);
  ExpectSessionStillServes();
  EXPECT_EQ(ErrorOf(session_->Read<int>(memory).status()).code(), v1::STALE_HANDLE);
  EXPECT_EQ(ErrorOf(session_->Write<int>(memory, 1)).code(), v1::STALE_HANDLE);
}

TEST_F(RemoteMemoryTest, OversizedRequestsAreRefused) {
  EXPECT_EQ(ErrorOf(session_->AllocMemory(size_t{1} << 40).status()).code(),
            v1::RESOURCE_EXHAUSTED);
  RemotePtr memory = Alloc(8);
  EXPECT_EQ(ErrorOf(session_->ReadMemory(memory, size_t{1} << 40).status()).code(),
            v1::RESOURCE_EXHAUSTED);
}

TEST_F(RemoteMemoryTest, MissingAddressNamesTheField) {
  v1::Request read;
  read.mutable_read_memory()->set_size(4);
  v1::Error error = ErrorOf(session_->Send(read).status());
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(error.field(), "read_memory.address");
}

TEST_F(RemoteMemoryTest, ExportedVariableIsReadAndWrittenThroughItsAddress) {
  absl::StatusOr<int> counter = lib_->Variable<int>("ffibox_test_counter");
  ASSERT_OK(counter);
  EXPECT_EQ(*counter, 42);
  absl::StatusOr<RemotePtr> address = lib_->SymbolAddress("ffibox_test_counter");
  ASSERT_OK(address);
  int seven = 7;
  ASSERT_TRUE(
      session_->WriteMemory(*address, std::string(reinterpret_cast<char*>(&seven), 4)).ok());
  EXPECT_EQ(*lib_->Variable<int>("ffibox_test_counter"), 7);
  EXPECT_EQ(ErrorOf(lib_->Variable<int>("no_such_variable").status()).code(), v1::SYMBOL_NOT_FOUND);
}

TEST_F(RemoteMemoryTest, TypedDerefReadsAndWritesValuesAtWorkerAddresses) {
  absl::StatusOr<RemotePtr> memory = session_->AllocMemory(64);
  ASSERT_OK(memory);
  ASSERT_TRUE(session_->Write<Point>(*memory, Point{1.25, -8}).ok());
  absl::StatusOr<Point> point = session_->Read<Point>(*memory);
  ASSERT_OK(point);
  EXPECT_EQ(point->x, 1.25);
  EXPECT_EQ(point->y, -8);
  EXPECT_EQ(*session_->Read<double>(memory->Offset(8)), -8);

  ASSERT_TRUE(session_->Write<int>(memory->Offset(16), -123456).ok());
  EXPECT_EQ(*session_->Read<int>(memory->Offset(16)), -123456);
  ASSERT_TRUE(session_->Write<RemotePtr>(memory->Offset(24), *memory).ok());
  absl::StatusOr<RemotePtr> stored = session_->Read<RemotePtr>(memory->Offset(24));
  ASSERT_OK(stored);
  EXPECT_EQ(stored->address, memory->address);

  ASSERT_TRUE(session_->FillMemory(memory->Offset(32), 0x7f, 4).ok());
  ASSERT_TRUE(session_->CopyMemory(memory->Offset(40), memory->Offset(32), 4).ok());
  EXPECT_EQ(*session_->Read<int>(memory->Offset(40)), 0x7f7f7f7f);

  // A pointer the library returned, dereferenced as a typed array.
  absl::StatusOr<RemotePtr> greeting = Fn<RemotePtr()>("greeting")();
  ASSERT_OK(greeting);
  absl::StatusOr<std::array<char, 5>> hello = session_->Read<std::array<char, 5>>(*greeting);
  ASSERT_OK(hello);
  EXPECT_EQ(std::string(hello->data(), 5), "hello");
  absl::StatusOr<RemotePtr> wide = Fn<RemotePtr()>("wgreeting")();
  ASSERT_OK(wide);
  EXPECT_EQ(*session_->ReadWString(*wide), U"h\u00e9llo \u4e16\u754c");

  // Bad addresses are errors, not crashes.
  EXPECT_EQ(ErrorOf(session_->Read<Point>(RemotePtr(16, memory->generation)).status()).code(),
            v1::MEMORY_FAULT);
  EXPECT_EQ(ErrorOf(session_->Write<int>(RemotePtr(8, memory->generation), 1)).code(),
            v1::MEMORY_FAULT);
  EXPECT_TRUE(session_->FreeMemory(*memory).ok());
  ExpectSessionStillServes();
}

TEST_F(RemoteMemoryTest, ExportedVariablesAreReadAndWrittenAsTypedValues) {
  EXPECT_EQ(*lib_->Variable<int>("ffibox_test_counter"), 42);
  absl::StatusOr<Point> origin = lib_->Variable<Point>("ffibox_origin");
  ASSERT_OK(origin);
  EXPECT_EQ(origin->x, 1.5);
  EXPECT_EQ(origin->y, -2.5);
  EXPECT_EQ(*lib_->Variable<double>("ffibox_scale"), 2.25);
  absl::StatusOr<std::string> version = lib_->Variable<std::string>("ffibox_version");
  ASSERT_OK(version);
  EXPECT_EQ(*version, "ffibox-test 1.0");

  ASSERT_TRUE(lib_->SetVariable<Point>("ffibox_origin", Point{-3, 4}).ok());
  EXPECT_EQ(*Fn<double()>("origin_norm1")(), 7.0);  // the library sees the new value
  EXPECT_EQ(lib_->Variable<Point>("ffibox_origin")->x, -3);
  ASSERT_TRUE(lib_->SetVariable<double>("ffibox_scale", 0.5).ok());
  EXPECT_EQ(*lib_->Variable<double>("ffibox_scale"), 0.5);
  ASSERT_TRUE(lib_->SetVariable<int>("ffibox_test_counter", 7).ok());
  EXPECT_EQ(*lib_->Variable<int>("ffibox_test_counter"), 7);
  EXPECT_EQ(ErrorOf(lib_->Variable<Point>("no_such_variable").status()).code(),
            v1::SYMBOL_NOT_FOUND);
}

TEST_F(RemoteMemoryTest, ArrayVariablesAreReadAndWrittenAsStdArrays) {
  using Primes = std::array<int, 5>;
  EXPECT_EQ(*lib_->Variable<Primes>("ffibox_primes"), (Primes{2, 3, 5, 7, 11}));
  ASSERT_OK(lib_->SetVariable<Primes>("ffibox_primes", Primes{1, 4, 9, 16, 25}));
  EXPECT_EQ(*lib_->Variable<Primes>("ffibox_primes"), (Primes{1, 4, 9, 16, 25}));
  // The first three elements, as a shorter array.
  EXPECT_EQ(*(lib_->Variable<std::array<int, 3>>("ffibox_primes")), (std::array<int, 3>{1, 4, 9}));
  // An array of records: ffibox_origin as one Point.
  absl::StatusOr<std::array<Point, 1>> origin =
      lib_->Variable<std::array<Point, 1>>("ffibox_origin");
  ASSERT_OK(origin);
  EXPECT_EQ((*origin)[0].y, -2.5);
  EXPECT_EQ(ErrorOf(lib_->Variable<Primes>("no_such_variable").status()).code(),
            v1::SYMBOL_NOT_FOUND);
}

}  // namespace
}  // namespace ffibox
