// Bad requests through a real ffiboxd: each gets a precise typed error and the session keeps
// working afterwards.
#include <memory>
#include <string>

#include "client/cpp/ffibox_client.h"
#include "core/test_types.h"
#include "gtest/gtest.h"
#include "tests/support/session_fixture.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

using ::ffibox::testing::ScalarType;

using test_support::TestLibPath;
using test_support::TestServer;

class BadRequestsTest : public test_support::SessionFixture {
 protected:
  std::vector<std::string> ServerFlags() const override { return {"--max_message_bytes=65536"}; }

  void SetUp() override {
    SessionFixture::SetUp();
    if (HasFatalFailure()) return;
    library_ = lib_->handle();
    absl::StatusOr<RawFunction> add =
        lib_->Resolve("add_int", TypedFunction<int(int, int)>::Signature());
    ASSERT_OK(add);
    add_ = add->handle();
  }

  // Sends `request` and returns the public error it produced (code 0 if it succeeded).
  v1::Error ErrorFor(v1::Request request) {
    return ErrorOf(session_->Send(std::move(request)).status());
  }

  v1::Request AddCall(std::vector<v1::Value> args) {
    v1::Request request;
    request.mutable_call()->set_function(add_);
    for (v1::Value& arg : args) *request.mutable_call()->add_args() = std::move(arg);
    return request;
  }

  static v1::Value Int(int64_t value) {
    v1::Value v;
    v.set_int_value(value);
    return v;
  }

  // The session still computes 2 + 3 correctly.
  void ExpectSessionUsable() {
    absl::StatusOr<v1::Response> response = session_->Send(AddCall({Int(2), Int(3)}));
    ASSERT_OK(response);
    EXPECT_EQ(response->call().result().int_value(), 5);
  }

  uint64_t library_ = 0;
  uint64_t add_ = 0;
};

TEST_F(BadRequestsTest, UnknownFunctionHandleIsNotFound) {
  v1::Request request = AddCall({Int(1), Int(2)});
  request.mutable_call()->set_function(999);
  v1::Error error = ErrorFor(request);
  EXPECT_EQ(error.code(), v1::NOT_FOUND) << error.message();
  EXPECT_NE(error.message().find("999"), std::string::npos) << error.message();
  ExpectSessionUsable();
}

TEST_F(BadRequestsTest, UnknownLibraryHandleIsNotFound) {
  v1::Request request;
  request.mutable_resolve_function()->set_library(77);
  request.mutable_resolve_function()->set_symbol("add_int");
  *request.mutable_resolve_function()->mutable_signature()->mutable_result() = ScalarType(v1::INT);
  EXPECT_EQ(ErrorFor(request).code(), v1::NOT_FOUND);
  ExpectSessionUsable();
}

TEST_F(BadRequestsTest, WrongArgumentCountNamesTheExpectedCount) {
  v1::Error error = ErrorFor(AddCall({Int(1)}));
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(error.field(), "call.args");
  EXPECT_NE(error.message().find("expected 2"), std::string::npos) << error.message();
  ExpectSessionUsable();
}

TEST_F(BadRequestsTest, ValueOfTheWrongKindNamesTheArgument) {
  v1::Value text;
  text.set_bytes_value("not an int");
  v1::Error error = ErrorFor(AddCall({Int(1), text}));
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT) << error.message();
  EXPECT_EQ(error.field(), "call.args[1]") << error.message();
  ExpectSessionUsable();
}

TEST_F(BadRequestsTest, IntegerOutOfRangeForTheCTypeIsRefused) {
  v1::Error error = ErrorFor(AddCall({Int(int64_t{1} << 40), Int(1)}));
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT) << error.message();
  EXPECT_EQ(error.field(), "call.args[0]") << error.message();
  ExpectSessionUsable();
}

TEST_F(BadRequestsTest, MissingLibraryIsLibraryLoadFailedWithTheReason) {
  absl::StatusOr<Library> missing = session_->Load("/nonexistent/libmissing.so");
  v1::Error error = ErrorOf(missing.status());
  EXPECT_EQ(error.code(), v1::LIBRARY_LOAD_FAILED);
  EXPECT_NE(error.message().find("/nonexistent/libmissing.so"), std::string::npos);
  EXPECT_NE(error.message().find("No such file"), std::string::npos) << error.message();
  ExpectSessionUsable();
}

TEST_F(BadRequestsTest, MissingSymbolIsSymbolNotFound) {
  v1::Request request;
  request.mutable_resolve_function()->set_library(library_);
  request.mutable_resolve_function()->set_symbol("no_such_function");
  v1::Error error = ErrorFor(request);
  EXPECT_EQ(error.code(), v1::SYMBOL_NOT_FOUND);
  EXPECT_NE(error.message().find("no_such_function"), std::string::npos);
  ExpectSessionUsable();
}

TEST_F(BadRequestsTest, MalformedSignatureNamesTheField) {
  v1::Request request;
  request.mutable_resolve_function()->set_library(library_);
  request.mutable_resolve_function()->set_symbol("add_int");
  v1::Signature* signature = request.mutable_resolve_function()->mutable_signature();
  *signature->mutable_result() = ScalarType(v1::INT);
  *signature->add_params() = ScalarType(v1::INT);
  signature->add_params();  // a type with no kind
  v1::Error error = ErrorFor(request);
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(error.field(), "resolve_function.signature.params[1]") << error.message();
  ExpectSessionUsable();
}

TEST_F(BadRequestsTest, ParsedDeclarationResolvesAndCalls) {
  v1::Request parse;
  parse.mutable_parse_declaration()->set_declaration("int add_int(int a, int b);");
  absl::StatusOr<v1::Response> parsed = session_->Send(parse);
  ASSERT_OK(parsed);
  ASSERT_TRUE(parsed->has_declaration());
  EXPECT_EQ(parsed->declaration().name(), "add_int");

  v1::Request resolve;
  resolve.mutable_resolve_function()->set_library(library_);
  resolve.mutable_resolve_function()->set_symbol(parsed->declaration().name());
  *resolve.mutable_resolve_function()->mutable_signature() = parsed->declaration().signature();
  absl::StatusOr<v1::Response> resolved = session_->Send(resolve);
  ASSERT_OK(resolved);
  v1::Request call = AddCall({Int(40), Int(2)});
  call.mutable_call()->set_function(resolved->function().function());
  absl::StatusOr<v1::Response> response = session_->Send(call);
  ASSERT_OK(response);
  EXPECT_EQ(response->call().result().int_value(), 42);
}

TEST_F(BadRequestsTest, UnparsableDeclarationNamesTheField) {
  v1::Request request;
  request.mutable_parse_declaration()->set_declaration("double cos(struct x)");
  v1::Error error = ErrorFor(request);
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT) << error.message();
  EXPECT_EQ(error.field(), "parse_declaration.declaration.params[0]") << error.message();
  ExpectSessionUsable();
}

TEST_F(BadRequestsTest, OverlongDeclarationIsInvalidArgument) {
  v1::Request request;
  request.mutable_parse_declaration()->set_declaration("int f(" + std::string(5000, ' ') + ")");
  v1::Error error = ErrorFor(request);
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT) << error.message();
  EXPECT_EQ(error.field(), "parse_declaration.declaration") << error.message();
  EXPECT_NE(error.message().find("4096"), std::string::npos) << error.message();
  ExpectSessionUsable();
}

TEST_F(BadRequestsTest, OversizedRequestIsResourceExhaustedAndTheStreamSurvives) {
  v1::Request request;
  request.mutable_load_library()->set_path("/" + std::string(100000, 'x'));
  v1::Error error = ErrorFor(request);
  EXPECT_EQ(error.code(), v1::RESOURCE_EXHAUSTED) << error.message();
  EXPECT_NE(error.message().find("65536"), std::string::npos) << error.message();
  ExpectSessionUsable();
}

TEST_F(BadRequestsTest, RequestWithoutOperationIsInvalid) {
  v1::Error error = ErrorFor(v1::Request());
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT);
  ExpectSessionUsable();
}

TEST_F(BadRequestsTest, OpenAfterTheFirstRequestIsRefused) {
  v1::Request request;
  request.mutable_open();
  EXPECT_EQ(ErrorFor(request).code(), v1::FAILED_PRECONDITION);
  ExpectSessionUsable();
}

TEST_F(BadRequestsTest, NotYetImplementedOperationsSaySo) {
  v1::Request request;
  request.mutable_register_type();
  EXPECT_EQ(ErrorFor(request).code(), v1::UNIMPLEMENTED);
  ExpectSessionUsable();
}

TEST_F(BadRequestsTest, PipelinedRequestsAreAllAnsweredInOrderOfExecution) {
  std::vector<std::future<absl::StatusOr<v1::Response>>> answers;
  for (int i = 0; i < 50; ++i) answers.push_back(session_->SendAsync(AddCall({Int(i), Int(1)})));
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<v1::Response> response = answers[i].get();
    ASSERT_OK(response);
    EXPECT_EQ(response->call().result().int_value(), i + 1);
  }
}

}  // namespace
}  // namespace ffibox
