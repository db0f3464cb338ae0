#include "server/broker/handle_table.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

v1::Signature DoubleOfDouble() {
  v1::Signature signature;
  signature.mutable_result()->set_scalar(v1::DOUBLE);
  signature.add_params()->set_scalar(v1::DOUBLE);
  return signature;
}

v1::DefineCallback DefinitionOf(const v1::Signature& signature, uint32_t buffer_bytes = 0) {
  v1::DefineCallback definition;
  *definition.mutable_signature() = signature;
  definition.set_buffer_bytes(buffer_bytes);
  return definition;
}

HandleTable::Function ByName(uint64_t library, const std::string& symbol) {
  return HandleTable::Function{library, symbol, DoubleOfDouble()};
}

TEST(HandleTable, LibrariesAreNumberedFromOneAndAFailedLoadIsNotFound) {
  HandleTable table(HandleTable::Limits{});
  ASSERT_OK_AND_ASSIGN(uint64_t libm, table.AddLibrary("/lib/libm.so.6"));
  ASSERT_OK_AND_ASSIGN(uint64_t missing, table.AddLibrary("/lib/missing.so"));
  EXPECT_EQ(libm, 1u);
  EXPECT_EQ(missing, 2u);
  // Pending loads may be used at once: the worker runs requests in order.
  EXPECT_OK(table.CheckLibrary(libm, "resolve_function.library"));
  table.RecordOutcome(v1::Request::kLoadLibrary, libm, true);
  table.RecordOutcome(v1::Request::kLoadLibrary, missing, false);
  EXPECT_OK(table.CheckLibrary(libm, "resolve_function.library"));
  absl::Status failed = table.CheckLibrary(missing, "lookup_symbol.library");
  EXPECT_THAT(failed, StatusIs(v1::NOT_FOUND));
  EXPECT_EQ(ToProtoError(failed).message(),
            "lookup_symbol.library: no loaded library has handle 2");
  EXPECT_THAT(table.CheckLibrary(0, "x"), StatusIs(v1::NOT_FOUND));
  EXPECT_THAT(table.CheckLibrary(3, "x"), StatusIs(v1::NOT_FOUND));
}

TEST(HandleTable, ARequestIdNamesTheHandleItsRequestMadeUntilThatFails) {
  HandleTable table(HandleTable::Limits{});
  ASSERT_OK_AND_ASSIGN(uint64_t libm, table.AddLibrary("/lib/libm.so.6"));
  table.NoteLoadRequest(7, libm);
  ASSERT_OK_AND_ASSIGN(uint64_t cos, table.AddFunction(ByName(libm, "cos")));
  table.NoteResolveRequest(8, cos);
  // Pending: named at once, as the handles are.
  ASSERT_OK_AND_ASSIGN(uint64_t loaded, table.LibraryOfRequest(7, "x"));
  EXPECT_EQ(loaded, libm);
  ASSERT_OK_AND_ASSIGN(uint64_t resolved, table.FunctionOfRequest(8, "x"));
  EXPECT_EQ(resolved, cos);
  // A load's id names no function, and an id no accepted request had names nothing.
  absl::Status not_a_resolve = table.FunctionOfRequest(7, "call.function_request").status();
  EXPECT_THAT(not_a_resolve, StatusIs(v1::NOT_FOUND));
  EXPECT_EQ(ToProtoError(not_a_resolve).message(),
            "call.function_request: no resolve_function request with id 7 was accepted");
  EXPECT_THAT(table.LibraryOfRequest(9, "x").status(), StatusIs(v1::NOT_FOUND));

  table.RecordOutcome(v1::Request::kLoadLibrary, libm, false);
  table.RecordOutcome(v1::Request::kResolveFunction, cos, false);
  absl::Status failed = table.LibraryOfRequest(7, "lookup_symbol.library_request").status();
  EXPECT_THAT(failed, StatusIs(v1::NOT_FOUND));
  EXPECT_EQ(ToProtoError(failed).message(),
            "lookup_symbol.library_request: the load_library request with id 7 failed");
  EXPECT_THAT(table.FunctionOfRequest(8, "x").status(), StatusIs(v1::NOT_FOUND));

  // An id used again names what its latest request made.
  ASSERT_OK_AND_ASSIGN(uint64_t libc, table.AddLibrary("/lib/libc.so.6"));
  table.NoteLoadRequest(7, libc);
  ASSERT_OK_AND_ASSIGN(uint64_t again, table.LibraryOfRequest(7, "x"));
  EXPECT_EQ(again, libc);
}

TEST(HandleTable, EachKindOfHandleHasItsLimit) {
  HandleTable table(HandleTable::Limits{1, 1, 1});
  ASSERT_OK(table.AddLibrary("/lib/libm.so.6"));
  absl::StatusOr<uint64_t> library = table.AddLibrary("/lib/libc.so.6");
  EXPECT_THAT(library.status(), StatusIs(v1::RESOURCE_EXHAUSTED));
  EXPECT_EQ(ToProtoError(library.status()).message(), "a session may load at most 1 libraries");
  ASSERT_OK(table.AddFunction(ByName(1, "cos")));
  EXPECT_THAT(table.AddFunction(ByName(1, "sin")).status(), StatusIs(v1::RESOURCE_EXHAUSTED));
  ASSERT_OK_AND_ASSIGN(uint64_t callback, table.AddCallback(DefinitionOf(DoubleOfDouble())));
  EXPECT_THAT(table.AddCallback(DefinitionOf(DoubleOfDouble())).status(),
              StatusIs(v1::RESOURCE_EXHAUSTED));
  // A freed callback makes room once the worker answers the free.
  ASSERT_OK(table.MarkCallbackFreed(callback));
  table.RecordOutcome(v1::Request::kFreeCallback, callback, true);
  EXPECT_OK(table.AddCallback(DefinitionOf(DoubleOfDouble())));
}

// A signature of `bytes` or so: one record parameter with a name that long.
v1::Signature Weighing(size_t bytes) {
  v1::Signature signature = DoubleOfDouble();
  v1::RecordType* record = signature.add_params()->mutable_record();
  record->set_kind(v1::RecordType::STRUCT);
  record->set_name(std::string(bytes, 'n'));
  record->add_fields()->mutable_type()->set_scalar(v1::INT);
  return signature;
}

TEST(HandleTable, WhatASessionKeepsOfItsSignaturesIsBounded) {
  HandleTable::Limits limits;
  limits.max_kept_bytes = 3 << 20;
  HandleTable table(limits);
  const size_t mib = 1 << 20;
  ASSERT_OK_AND_ASSIGN(uint64_t first, table.AddFunction({1, "a", Weighing(mib)}));
  ASSERT_OK_AND_ASSIGN(uint64_t callback, table.AddCallback(DefinitionOf(Weighing(mib))));
  EXPECT_GT(table.kept_bytes(), 2 * mib);
  absl::StatusOr<uint64_t> refused = table.AddFunction({1, "b", Weighing(mib)});
  EXPECT_THAT(refused.status(), StatusIs(v1::RESOURCE_EXHAUSTED));
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("more than the session may keep"));
  EXPECT_THAT(table.AddCallback(DefinitionOf(Weighing(mib))).status(),
              StatusIs(v1::RESOURCE_EXHAUSTED));
  EXPECT_EQ(table.function_count(), 1u);
  // A resolve that failed keeps its handle (requests may name it) but not its signature.
  table.RecordOutcome(v1::Request::kResolveFunction, first, false);
  ASSERT_OK(table.AddFunction({1, "c", Weighing(mib)}));
  // A freed callback gives its bytes back.
  ASSERT_OK(table.MarkCallbackFreed(callback));
  table.RecordOutcome(v1::Request::kFreeCallback, callback, true);
  ASSERT_OK_AND_ASSIGN(uint64_t again, table.AddCallback(DefinitionOf(Weighing(mib))));
  table.ForgetCallback(again);
  EXPECT_LT(table.kept_bytes(), 2 * mib);
}

// A signature of few encoded bytes and many parsed ones: a pointer to a record of `fields`
// unnamed int fields (about 6 bytes each encoded, a hundred parsed).
v1::Signature ManyFieldsBehindAPointer(int fields) {
  v1::Signature signature = DoubleOfDouble();
  v1::RecordType* record =
      signature.add_params()->mutable_pointer()->mutable_pointee()->mutable_record();
  record->set_kind(v1::RecordType::STRUCT);
  for (int i = 0; i < fields; ++i) record->add_fields()->mutable_type()->set_scalar(v1::INT);
  return signature;
}

TEST(HandleTable, WhatIsKeptIsCountedAsParsedNotAsSent) {
  HandleTable::Limits limits;
  limits.max_kept_bytes = 3 << 20;
  HandleTable table(limits);
  // 100000 fields: under 1 MiB encoded, several times the limit once parsed.
  const v1::Signature signature = ManyFieldsBehindAPointer(100000);
  ASSERT_LT(signature.ByteSizeLong(), size_t{1} << 20);
  absl::StatusOr<uint64_t> refused = table.AddFunction({1, "a", signature});
  EXPECT_THAT(refused.status(), StatusIs(v1::RESOURCE_EXHAUSTED));
  EXPECT_THAT(table.AddCallback(DefinitionOf(signature)).status(),
              StatusIs(v1::RESOURCE_EXHAUSTED));
  EXPECT_EQ(table.kept_bytes(), 0u);
  // Ordinary signatures still fit by the thousand.
  for (int i = 0; i < 2000; ++i) ASSERT_OK(table.AddFunction(ByName(1, absl::StrCat("f", i))));
  EXPECT_LT(table.kept_bytes(), size_t{2} << 20);
}

TEST(HandleTable, HandlesWhoseReplayFailedSayWhy) {
  HandleTable table(HandleTable::Limits{});
  ASSERT_OK_AND_ASSIGN(uint64_t libm, table.AddLibrary("/lib/libm.so.6"));
  ASSERT_OK_AND_ASSIGN(uint64_t libz, table.AddLibrary("/lib/libz.so.1"));
  ASSERT_OK_AND_ASSIGN(uint64_t cos, table.AddFunction(ByName(libm, "cos")));
  ASSERT_OK_AND_ASSIGN(uint64_t crc, table.AddFunction(ByName(libz, "crc32")));
  for (uint64_t library : {libm, libz}) {
    table.RecordOutcome(v1::Request::kLoadLibrary, library, true);
  }
  for (uint64_t function : {cos, crc}) {
    table.RecordOutcome(v1::Request::kResolveFunction, function, true);
  }
  // libm's file is gone when a new worker is given it again; its functions go with it,
  // even before their own replays are answered.
  table.RecordOutcome(v1::Request::kLoadLibrary, libm, false);
  table.RecordLost(v1::Request::kLoadLibrary, libm, "dlopen /lib/libm.so.6 (replay) failed: gone");
  const std::string lost =
      " (it was lost with its worker: dlopen /lib/libm.so.6 (replay) failed: gone)";
  EXPECT_EQ(ToProtoError(table.FindFunction(cos).status()).message(),
            absl::StrCat("call.function: no resolved function has handle ", cos, lost));
  EXPECT_EQ(ToProtoError(table.CheckLibrary(libm, "resolve_function.library")).message(),
            absl::StrCat("resolve_function.library: no loaded library has handle ", libm, lost));
  // A function whose own replay failed says its own reason; libz's others are untouched.
  ASSERT_OK_AND_ASSIGN(uint64_t adler, table.AddFunction(ByName(libz, "adler32")));
  table.RecordOutcome(v1::Request::kResolveFunction, adler, true);
  table.RecordOutcome(v1::Request::kResolveFunction, crc, false);
  table.RecordLost(v1::Request::kResolveFunction, crc, "dlsym crc32 (replay) failed: no symbol");
  EXPECT_EQ(ToProtoError(table.FindFunction(crc).status()).message(),
            absl::StrCat("call.function: no resolved function has handle ", crc,
                         " (it was lost with its worker: dlsym crc32 (replay) failed: no symbol)"));
  EXPECT_OK(table.FindFunction(adler));
  // The worker's part of a reason is untrusted text of any length: at most 512 bytes kept.
  table.RecordOutcome(v1::Request::kResolveFunction, adler, false);
  table.RecordLost(v1::Request::kResolveFunction, adler, std::string(100000, 'x'));
  const std::string long_reason = ToProtoError(table.FindFunction(adler).status()).message();
  EXPECT_LT(long_reason.size(), 700u);
  EXPECT_TRUE(absl::EndsWith(long_reason, "xxx...)")) << long_reason;
  EXPECT_OK(table.CheckLibrary(libz, "resolve_function.library"));
  // Only ready handles are replayed.
  for (const HandleTable::Replay& replay : table.Replays()) {
    EXPECT_NE(replay.label, "dlopen /lib/libm.so.6 (replay)");
  }
}

TEST(HandleTable, AFunctionIsFoundUntilItsResolveFails) {
  HandleTable table(HandleTable::Limits{});
  ASSERT_OK_AND_ASSIGN(uint64_t cos, table.AddFunction(ByName(1, "cos")));
  ASSERT_OK_AND_ASSIGN(uint64_t nope, table.AddFunction(ByName(1, "no_such_symbol")));
  table.RecordOutcome(v1::Request::kResolveFunction, cos, true);
  table.RecordOutcome(v1::Request::kResolveFunction, nope, false);
  ASSERT_OK_AND_ASSIGN(const HandleTable::Function* found, table.FindFunction(cos));
  EXPECT_EQ(found->symbol, "cos");
  EXPECT_EQ(found->signature.params_size(), 1);
  absl::StatusOr<const HandleTable::Function*> failed = table.FindFunction(nope);
  EXPECT_THAT(failed.status(), StatusIs(v1::NOT_FOUND));
  EXPECT_EQ(ToProtoError(failed.status()).message(),
            "call.function: no resolved function has handle 2");
}

TEST(HandleTable, CallbacksAreFreedOnceAndAFailedDefinitionLeavesNoId) {
  HandleTable table(HandleTable::Limits{});
  ASSERT_OK_AND_ASSIGN(uint64_t kept, table.AddCallback(DefinitionOf(DoubleOfDouble())));
  ASSERT_OK_AND_ASSIGN(uint64_t refused, table.AddCallback(DefinitionOf(DoubleOfDouble())));
  table.RecordOutcome(v1::Request::kDefineCallback, kept, true);
  table.RecordOutcome(v1::Request::kDefineCallback, refused, false);
  EXPECT_NE(table.CallbackDefinition(kept), nullptr);
  EXPECT_EQ(table.CallbackDefinition(refused), nullptr);
  EXPECT_EQ(table.callback_count(), 1u);
  ASSERT_OK(table.MarkCallbackFreed(kept));
  // The worker may still invoke it until it answers the free; a second free is refused.
  EXPECT_NE(table.CallbackDefinition(kept), nullptr);
  absl::Status again = table.MarkCallbackFreed(kept);
  EXPECT_THAT(again, StatusIs(v1::NOT_FOUND));
  EXPECT_EQ(ToProtoError(again).message(), "free_callback.callback: no callback has id 1");
  table.RecordOutcome(v1::Request::kFreeCallback, kept, false);  // gone whatever the answer
  EXPECT_EQ(table.CallbackDefinition(kept), nullptr);
}

TEST(HandleTable, AReplayGivesANewWorkerEveryReadyHandleInOrder) {
  HandleTable table(HandleTable::Limits{});
  ASSERT_OK_AND_ASSIGN(uint64_t libm, table.AddLibrary("/lib/libm.so.6"));
  ASSERT_OK_AND_ASSIGN(uint64_t bad, table.AddLibrary("/lib/bad.so"));
  table.RecordOutcome(v1::Request::kLoadLibrary, libm, true);
  table.RecordOutcome(v1::Request::kLoadLibrary, bad, false);
  ASSERT_OK_AND_ASSIGN(uint64_t cos, table.AddFunction(ByName(libm, "cos")));
  table.RecordOutcome(v1::Request::kResolveFunction, cos, true);
  HandleTable::Function at_address = ByName(0, "function at 0x1000");
  at_address.generation = 1;
  ASSERT_OK_AND_ASSIGN(uint64_t by_address, table.AddFunction(at_address));
  table.RecordOutcome(v1::Request::kResolveFunction, by_address, true);
  ASSERT_OK_AND_ASSIGN(uint64_t pending, table.AddFunction(ByName(libm, "sin")));
  ASSERT_OK_AND_ASSIGN(uint64_t callback,
                       table.AddCallback(DefinitionOf(DoubleOfDouble(), /*buffer_bytes=*/4096)));
  table.RecordOutcome(v1::Request::kDefineCallback, callback, true);
  ASSERT_OK_AND_ASSIGN(uint64_t freed, table.AddCallback(DefinitionOf(DoubleOfDouble())));
  table.RecordOutcome(v1::Request::kDefineCallback, freed, true);
  ASSERT_OK(table.MarkCallbackFreed(freed));

  std::vector<HandleTable::Replay> replays = table.Replays();
  ASSERT_EQ(replays.size(), 3u);  // not: the failed load, by address, pending, being freed
  EXPECT_EQ(replays[0].op, v1::Request::kLoadLibrary);
  EXPECT_EQ(replays[0].handle, libm);
  EXPECT_EQ(replays[0].request.load_library().path(), "/lib/libm.so.6");
  EXPECT_EQ(replays[0].label, "dlopen /lib/libm.so.6 (replay)");
  EXPECT_EQ(replays[1].op, v1::Request::kResolveFunction);
  EXPECT_EQ(replays[1].handle, cos);
  EXPECT_EQ(replays[1].request.resolve_function().library(), libm);
  EXPECT_EQ(replays[1].request.resolve_function().symbol(), "cos");
  EXPECT_EQ(replays[1].request.resolve_function().signature().params_size(), 1);
  EXPECT_EQ(replays[2].op, v1::Request::kDefineCallback);
  EXPECT_EQ(replays[2].handle, callback);
  EXPECT_EQ(replays[2].request.define_callback().signature().result().scalar(), v1::DOUBLE);
  // The next worker ships what follows a pointee as the first did.
  EXPECT_EQ(replays[2].request.define_callback().buffer_bytes(), 4096u);
  EXPECT_NE(pending, 0u);
}

}  // namespace
}  // namespace ffibox
