#include "server/broker/request_validation.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "core/call_answer.h"
#include "core/errors.h"
#include "core/test_types.h"
#include "gtest/gtest.h"
#include "server/broker/pending_request.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

using ::ffibox::testing::ArrayOf;
using ::ffibox::testing::ScalarType;

// int f(int, double)
v1::Signature TwoParams() {
  v1::Signature signature;
  *signature.mutable_result() = ScalarType(v1::INT);
  *signature.add_params() = ScalarType(v1::INT);
  *signature.add_params() = ScalarType(v1::DOUBLE);
  return signature;
}

std::string FieldOf(const absl::Status& status) { return ToProtoError(status).field(); }

TEST(ValidateLoadLibrary, AcceptsASoname) {
  v1::LoadLibrary load;
  load.set_path("libm.so.6");
  EXPECT_TRUE(ValidateLoadLibrary(load).ok());
}

TEST(ValidateLoadLibrary, EmptyPathIsInvalidArgumentNamingThePath) {
  v1::LoadLibrary load;
  absl::Status status = ValidateLoadLibrary(load);
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(status), "load_library.path");
}

TEST(ValidateLoadLibrary, NulInPathIsInvalidArgument) {
  v1::LoadLibrary load;
  load.set_path(std::string("/usr/lib/libm.so\0evil", 21));
  absl::Status status = ValidateLoadLibrary(load);
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(status), "load_library.path");
  EXPECT_NE(status.message().find("NUL"), absl::string_view::npos) << status;
}

TEST(ValidateLoadLibrary, OverLongPathIsInvalidArgument) {
  v1::LoadLibrary load;
  load.set_path("/" + std::string(kMaxPathBytes, 'a'));
  absl::Status status = ValidateLoadLibrary(load);
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(status), "load_library.path");
  load.set_path(std::string(kMaxPathBytes, 'a'));
  EXPECT_TRUE(ValidateLoadLibrary(load).ok());
}

TEST(ValidateResolveFunction, OverLongSymbolIsInvalidArgument) {
  v1::ResolveFunction resolve;
  resolve.set_library(1);
  resolve.set_symbol(std::string(kMaxSymbolBytes + 1, 's'));
  absl::Status status = ValidateResolveFunction(resolve, TypeLimits());
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(status), "resolve_function.symbol");
}

TEST(ValidateResolveFunction, EmptyAndNulSymbolsAreInvalidArgument) {
  v1::ResolveFunction resolve;
  resolve.set_library(1);
  EXPECT_EQ(FieldOf(ValidateResolveFunction(resolve, TypeLimits())), "resolve_function.symbol");
  resolve.set_symbol(std::string("cos\0x", 5));
  EXPECT_EQ(FieldOf(ValidateResolveFunction(resolve, TypeLimits())), "resolve_function.symbol");
}

TEST(ValidateResolveFunction, ALibraryIsNamedByHandleOrByItsLoadRequestNotBoth) {
  v1::ResolveFunction resolve;
  resolve.set_library_request(4);
  resolve.set_symbol("cos");
  EXPECT_TRUE(ValidateResolveFunction(resolve, TypeLimits()).ok());
  resolve.set_library(1);
  EXPECT_EQ(FieldOf(ValidateResolveFunction(resolve, TypeLimits())),
            "resolve_function.library_request");
  v1::ResolveFunction by_address;
  by_address.mutable_address()->set_address(0x1000);
  by_address.set_library_request(4);
  EXPECT_EQ(FieldOf(ValidateResolveFunction(by_address, TypeLimits())), "resolve_function.address");
  v1::LookupSymbol lookup;
  lookup.set_symbol("errno");
  lookup.set_library(1);
  lookup.set_library_request(4);
  EXPECT_EQ(FieldOf(ValidateLookupSymbol(lookup, TypeLimits())), "lookup_symbol.library_request");
}

TEST(ValidateResolveFunction, BadSignatureNamesTheParameter) {
  v1::ResolveFunction resolve;
  resolve.set_library(1);
  resolve.set_symbol("cos");
  *resolve.mutable_signature() = TwoParams();
  EXPECT_TRUE(ValidateResolveFunction(resolve, TypeLimits()).ok());
  resolve.mutable_signature()->add_params();  // kind unset
  absl::Status status = ValidateResolveFunction(resolve, TypeLimits());
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(status).rfind("resolve_function.signature.params[2]", 0), 0u)
      << FieldOf(status);
}

TEST(KeptBlocks, ListsTheBlocksSentWithKeepInOrder) {
  v1::Call call;
  call.add_blocks()->set_keep(true);
  call.add_blocks()->mutable_at()->set_address(0x1000);
  call.add_blocks()->set_keep(true);
  EXPECT_EQ(KeptBlocks(call), (std::vector<uint32_t>{0, 2}));
}

TEST(ReturnedBlockSizes, InBlocksAreNotReturnedAndSizeZeroMeansTheDataLength) {
  v1::Call call;
  v1::MemoryBlock* in = call.add_blocks();
  in->set_direction(v1::IN);
  in->set_size(8);
  v1::MemoryBlock* out = call.add_blocks();
  out->set_direction(v1::OUT);
  out->set_size(4);
  v1::MemoryBlock* inout = call.add_blocks();
  inout->set_direction(v1::INOUT);
  inout->set_data("abc");
  v1::MemoryBlock* unspecified = call.add_blocks();
  unspecified->set_size(16);
  unspecified->set_data("x");
  v1::MemoryBlock* empty = call.add_blocks();
  empty->set_direction(v1::OUT);
  EXPECT_EQ(ReturnedBlockSizes(call),
            (std::vector<uint64_t>{PendingRequest::kNotReturned, 4, 3, 16, 0}));
}

v1::Type StructOf(const v1::Type& member, int count, int bit_width = -1000) {
  v1::Type type;
  type.mutable_record()->set_kind(v1::RecordType::STRUCT);
  for (int i = 0; i < count; ++i) {
    v1::Field* field = type.mutable_record()->add_fields();
    *field->mutable_type() = member;
    if (bit_width != -1000) field->set_bit_width(bit_width);
  }
  return type;
}

// resolve_function with `param` as the only parameter.
v1::ResolveFunction ResolveWithParam(const v1::Type& param) {
  v1::ResolveFunction resolve;
  resolve.set_library(1);
  resolve.set_symbol("f");
  *resolve.mutable_signature()->add_params() = param;
  return resolve;
}

TEST(HostileTypes, AreRefusedWithInvalidArgumentNamingTheField) {
  const TypeLimits limits;
  struct Case {
    const char* what;
    v1::Type type;
    std::string field;
  };
  v1::Type deep = ScalarType(v1::INT);
  for (int i = 0; i < 1000; ++i) deep = StructOf(deep, 1);
  // 2^20 records of 2^20 records of 2^20 bytes: each level fits the array length limit,
  // the product overflows nothing because every level is checked against max_type_size.
  v1::Type mib = ArrayOf(ScalarType(v1::CHAR), 1 << 20);
  v1::Type record_of_records = ArrayOf(StructOf(ArrayOf(StructOf(mib, 1), 1 << 20), 1), 1 << 20);
  const Case cases[] = {
      {"array of 2^62 elements", ArrayOf(ScalarType(v1::INT), uint64_t{1} << 62),
       "resolve_function.signature.params[0].array.length"},
      {"negative bit width", StructOf(ScalarType(v1::INT), 1, -1),
       "resolve_function.signature.params[0].record.fields[0].bit_width"},
      {"bit width wider than its type", StructOf(ScalarType(v1::SHORT), 1, 17),
       "resolve_function.signature.params[0].record.fields[0].bit_width"},
      {"100k fields", StructOf(ScalarType(v1::INT), 100000),
       "resolve_function.signature.params[0].record.fields"},
      {"nesting 1000 deep", deep, ""},
      {"record of records over max_type_size", record_of_records, ""},
  };
  for (const Case& c : cases) {
    absl::Status status = ValidateResolveFunction(ResolveWithParam(c.type), limits);
    EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT)) << c.what << ": " << status;
    if (!c.field.empty()) {
      EXPECT_EQ(FieldOf(status), c.field) << c.what;
    } else {
      EXPECT_TRUE(absl::StartsWith(FieldOf(status), "resolve_function.signature.params[0]"))
          << c.what << ": " << FieldOf(status);
    }
  }
}

TEST(ValidateResolveFunction, AddressExcludesLibraryAndSymbol) {
  v1::ResolveFunction by_address;
  by_address.mutable_address()->set_address(0x1000);
  by_address.mutable_address()->set_generation(1);
  EXPECT_TRUE(ValidateResolveFunction(by_address, TypeLimits()).ok());
  v1::ResolveFunction both = by_address;
  both.set_symbol("f");
  EXPECT_EQ(FieldOf(ValidateResolveFunction(both, TypeLimits())), "resolve_function.address");
  both = by_address;
  both.set_library(1);
  EXPECT_EQ(FieldOf(ValidateResolveFunction(both, TypeLimits())), "resolve_function.address");
  v1::ResolveFunction null_address;
  null_address.mutable_address();
  EXPECT_EQ(FieldOf(ValidateResolveFunction(null_address, TypeLimits())),
            "resolve_function.address");
  v1::ResolveFunction neither;
  EXPECT_EQ(FieldOf(ValidateResolveFunction(neither, TypeLimits())), "resolve_function.symbol");
}

TEST(ValidateMemoryRequest, TypedReadNeedsAValidTypeAndAMatchingSize) {
  v1::Request request;
  v1::ReadMemory* read = request.mutable_read_memory();
  read->mutable_address()->set_address(0x1000);
  *read->mutable_type() = ScalarType(v1::DOUBLE);
  EXPECT_TRUE(ValidateMemoryRequest(request, TypeLimits()).ok());
  read->set_size(8);
  EXPECT_TRUE(ValidateMemoryRequest(request, TypeLimits()).ok());
  read->set_size(4);
  EXPECT_EQ(FieldOf(ValidateMemoryRequest(request, TypeLimits())), "read_memory.size");
  read->set_size(0);
  *read->mutable_type() = ScalarType(v1::VOID);
  EXPECT_EQ(FieldOf(ValidateMemoryRequest(request, TypeLimits())), "read_memory.type");
  *read->mutable_type() = ArrayOf(ScalarType(v1::INT), uint64_t{1} << 62);
  EXPECT_EQ(FieldOf(ValidateMemoryRequest(request, TypeLimits())), "read_memory.type.array.length");
}

TEST(ValidateMemoryRequest, AReadListHoldsOneToTheMostReadsEachValidAsARead) {
  v1::Request request;
  request.mutable_read_memory_list();
  EXPECT_EQ(FieldOf(ValidateMemoryRequest(request, TypeLimits())), "read_memory_list.reads");
  for (int i = 0; i < 2; ++i) {
    request.mutable_read_memory_list()->add_reads()->mutable_address()->set_address(0x1000);
  }
  EXPECT_TRUE(ValidateMemoryRequest(request, TypeLimits()).ok());
  request.mutable_read_memory_list()->mutable_reads(1)->clear_address();
  EXPECT_EQ(FieldOf(ValidateMemoryRequest(request, TypeLimits())),
            "read_memory_list.reads[1].address");
  request.mutable_read_memory_list()->mutable_reads(1)->mutable_address()->set_address(0x1000);
  *request.mutable_read_memory_list()->mutable_reads(0)->mutable_type() = ScalarType(v1::VOID);
  EXPECT_EQ(FieldOf(ValidateMemoryRequest(request, TypeLimits())),
            "read_memory_list.reads[0].type");
  request.mutable_read_memory_list()->mutable_reads(0)->clear_type();
  while (request.read_memory_list().reads_size() <= kMaxReadsPerList) {
    request.mutable_read_memory_list()->add_reads()->mutable_address()->set_address(0x1000);
  }
  EXPECT_EQ(FieldOf(ValidateMemoryRequest(request, TypeLimits())), "read_memory_list.reads");
}

TEST(ValidateMemoryRequest, OnlyRawReadsAreWatchedAndUnwatchesAreBounded) {
  v1::Request request;
  v1::ReadMemory* read = request.mutable_read_memory();
  read->mutable_address()->set_address(0x1000);
  read->set_size(4);
  read->set_watch(true);
  EXPECT_TRUE(ValidateMemoryRequest(request, TypeLimits()).ok());
  *read->mutable_type() = ScalarType(v1::INT);
  read->set_size(0);
  EXPECT_EQ(FieldOf(ValidateMemoryRequest(request, TypeLimits())), "read_memory.watch");
  read->set_watch(false);
  EXPECT_TRUE(ValidateMemoryRequest(request, TypeLimits()).ok());
  for (int i = 0; i < kMaxReadsPerList; ++i) read->add_unwatch(0x2000 + 8 * i);
  EXPECT_TRUE(ValidateMemoryRequest(request, TypeLimits()).ok());
  read->add_unwatch(0x1000);
  EXPECT_EQ(FieldOf(ValidateMemoryRequest(request, TypeLimits())), "read_memory.unwatch");
  // In a list, each read's own.
  v1::Request list;
  *list.mutable_read_memory_list()->add_reads() = *read;
  EXPECT_EQ(FieldOf(ValidateMemoryRequest(list, TypeLimits())),
            "read_memory_list.reads[0].unwatch");
}

TEST(ValidateMemoryRequest, TypedWriteTakesTypeAndValueOrDataNeverBoth) {
  v1::Request request;
  v1::WriteMemory* write = request.mutable_write_memory();
  write->mutable_address()->set_address(0x1000);
  write->set_data("abc");
  EXPECT_TRUE(ValidateMemoryRequest(request, TypeLimits()).ok());
  *write->mutable_type() = ScalarType(v1::INT);
  write->mutable_value()->set_int_value(3);
  EXPECT_EQ(FieldOf(ValidateMemoryRequest(request, TypeLimits())), "write_memory.data");
  write->clear_data();
  EXPECT_TRUE(ValidateMemoryRequest(request, TypeLimits()).ok());
  write->clear_value();
  EXPECT_EQ(FieldOf(ValidateMemoryRequest(request, TypeLimits())), "write_memory.value");
  write->clear_type();
  write->mutable_value()->set_int_value(3);
  EXPECT_EQ(FieldOf(ValidateMemoryRequest(request, TypeLimits())), "write_memory.value");
}

v1::Signature IntCallbackSignature() {
  v1::Signature signature;
  signature.mutable_result()->set_scalar(v1::INT);
  signature.add_params()->mutable_pointer()->mutable_pointee()->set_scalar(v1::INT);
  return signature;
}

TEST(ValidateDefineCallback, VariadicCallbacksAreRefused) {
  v1::DefineCallback define;
  *define.mutable_signature() = IntCallbackSignature();
  EXPECT_TRUE(ValidateDefineCallback(define, TypeLimits()).ok());
  define.mutable_signature()->set_variadic(true);
  absl::Status status = ValidateDefineCallback(define, TypeLimits());
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(ToProtoError(status).field(), "define_callback.signature.variadic");
  define.mutable_signature()->set_variadic(false);
  define.mutable_signature()->add_params()->set_scalar(v1::VOID);
  EXPECT_THAT(ValidateDefineCallback(define, TypeLimits()), StatusIs(v1::INVALID_ARGUMENT));
}

TEST(ValidateDefineCallback, BufferBytesAreBounded) {
  v1::DefineCallback define;
  *define.mutable_signature() = IntCallbackSignature();
  define.set_buffer_bytes(kMaxCallbackBufferBytes);
  EXPECT_TRUE(ValidateDefineCallback(define, TypeLimits()).ok());
  define.set_buffer_bytes(kMaxCallbackBufferBytes + 1);
  absl::Status status = ValidateDefineCallback(define, TypeLimits());
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(ToProtoError(status).field(), "define_callback.buffer_bytes");
}

TEST(ValidateCallbackReturn, ResultMustMatchTheCallbacksResultType) {
  const std::vector<std::pair<uint32_t, uint64_t>> none;
  v1::CallbackReturn answer;
  answer.set_invocation(3);
  EXPECT_THAT(ValidateCallbackReturn(answer, IntCallbackSignature(), none),
              StatusIs(v1::INVALID_ARGUMENT));  // missing
  answer.mutable_result()->set_float_value(1.5);
  EXPECT_THAT(ValidateCallbackReturn(answer, IntCallbackSignature(), none),
              StatusIs(v1::INVALID_ARGUMENT));  // not an integer
  answer.mutable_result()->set_int_value(-2);
  EXPECT_TRUE(ValidateCallbackReturn(answer, IntCallbackSignature(), none).ok());

  v1::Signature void_signature = IntCallbackSignature();
  void_signature.clear_result();
  EXPECT_THAT(ValidateCallbackReturn(answer, void_signature, none), StatusIs(v1::INVALID_ARGUMENT));
  answer.clear_result();
  EXPECT_TRUE(ValidateCallbackReturn(answer, void_signature, none).ok());
}

TEST(ValidateCallbackReturn, AnErrorNeedsNoResult) {
  v1::CallbackReturn answer;
  answer.set_invocation(3);
  answer.set_error("the client's function failed");
  EXPECT_TRUE(ValidateCallbackReturn(answer, IntCallbackSignature(), {}).ok());
}

TEST(ValidateCallbackReturn, PointeesOnlyForShippedArgumentsWithTheirSize) {
  const std::vector<std::pair<uint32_t, uint64_t>> shipped = {{0, 4}};
  v1::CallbackReturn answer;
  answer.mutable_result()->set_int_value(0);
  v1::PointeeData* pointee = answer.add_pointees();
  pointee->set_arg(0);
  pointee->set_data("abcd");
  EXPECT_TRUE(ValidateCallbackReturn(answer, IntCallbackSignature(), shipped).ok());
  EXPECT_THAT(ValidateCallbackReturn(answer, IntCallbackSignature(), {}),
              StatusIs(v1::INVALID_ARGUMENT));
  pointee->set_data("abcde");
  absl::Status status = ValidateCallbackReturn(answer, IntCallbackSignature(), shipped);
  EXPECT_EQ(ToProtoError(status).field(), "callback_return.pointees[0]");
  pointee->set_data("abcd");
  *answer.add_pointees() = *pointee;
  EXPECT_THAT(ValidateCallbackReturn(answer, IntCallbackSignature(), shipped),
              StatusIs(v1::INVALID_ARGUMENT));
}

TEST(ValidateEnvironment, AdmitsAllowedNamesAndNamesTheRefusedOne) {
  v1::OpenSession open;
  (*open.mutable_environment())["SDL_VIDEODRIVER"] = "dummy";
  (*open.mutable_environment())["LANG"] = "C";
  EXPECT_TRUE(ValidateEnvironment(open, {"SDL_*", "LANG"}).ok());
  absl::Status refused = ValidateEnvironment(open, {"SDL_*"});
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("LANG"), std::string::npos) << refused;
  EXPECT_FALSE(ValidateEnvironment(open, {}).ok());
  v1::OpenSession bad_name;
  (*bad_name.mutable_environment())["A=B"] = "x";
  EXPECT_FALSE(ValidateEnvironment(bad_name, {"*"}).ok());
  v1::OpenSession nul_value;
  (*nul_value.mutable_environment())["LANG"] = std::string("C\0evil", 6);
  EXPECT_FALSE(ValidateEnvironment(nul_value, {"*"}).ok());
}

}  // namespace
}  // namespace ffibox
