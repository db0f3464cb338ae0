#include "client/cpp/internal/pending_handle.h"

#include <future>
#include <utility>

#include "core/errors.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace client_internal {
namespace {

v1::Response Loaded(uint64_t handle) {
  v1::Response response;
  response.mutable_library()->set_library(handle);
  return response;
}

v1::Response Failed(v1::ErrorCode code, const char* message) {
  v1::Response response;
  response.mutable_error()->set_code(code);
  response.mutable_error()->set_message(message);
  return response;
}

TEST(PendingHandle, IsNamedByItsRequestUntilTheAnswerComesThenByTheHandle) {
  std::promise<absl::StatusOr<v1::Response>> answer;
  std::shared_ptr<PendingHandle> library = PendingHandle::Awaiting(
      7, v1::Request::kLoadLibrary, v1::Response::kLibrary, answer.get_future(), nullptr);
  PendingHandle::Name name = library->Current();
  EXPECT_EQ(name.request_id, 7u);
  EXPECT_EQ(name.handle, 0u);
  answer.set_value(Loaded(3));
  name = library->Current();
  EXPECT_EQ(name.request_id, 0u);
  EXPECT_EQ(name.handle, 3u);
  EXPECT_EQ(library->handle(), 3u);
  EXPECT_OK(library->Wait().status());
  // A failure of a request that used it stays that failure.
  absl::Status call = ErrorStatus(v1::CALL_TIMEOUT, "late");
  EXPECT_EQ(library->Explain(call), call);
}

// A load (request 4) and a resolve (request 5) that names it, both awaiting their answers.
class LoadAndResolve : public ::testing::Test {
 protected:
  std::promise<absl::StatusOr<v1::Response>> load;
  std::shared_ptr<PendingHandle> library = PendingHandle::Awaiting(
      4, v1::Request::kLoadLibrary, v1::Response::kLibrary, load.get_future(), nullptr);
  std::promise<absl::StatusOr<v1::Response>> resolve;
  std::shared_ptr<PendingHandle> function = PendingHandle::Awaiting(
      5, v1::Request::kResolveFunction, v1::Response::kFunction, resolve.get_future(), library);
};

TEST_F(LoadAndResolve, AFailedRequestExplainsTheFailuresOfThoseThatDependOnIt) {
  load.set_value(Failed(v1::LIBRARY_LOAD_FAILED, "cannot load libnope.so"));
  resolve.set_value(Failed(v1::NOT_FOUND, "library handle 1 is not loaded"));
  // The resolve failed because the load did: the load's failure is the function's.
  const absl::Status own = function->Wait().status();
  EXPECT_THAT(own, StatusIs(v1::LIBRARY_LOAD_FAILED));
  EXPECT_EQ(own.message(),
            ErrorStatus(v1::LIBRARY_LOAD_FAILED, "cannot load libnope.so").message());
  EXPECT_EQ(function->Current().handle, 0u);
  EXPECT_EQ(function->Current().request_id, 0u);
  EXPECT_THAT(function->Explain(ErrorStatus(v1::NOT_FOUND, "call.function")),
              StatusIs(v1::LIBRARY_LOAD_FAILED));
}

TEST_F(LoadAndResolve, AResolveRefusedBeforeItsLoadIsAnsweredIsItsOwnFailureAndNothingWaits) {
  // The broker refused the resolve at once (a bad signature) while the load runs on.
  resolve.set_value(Failed(v1::INVALID_ARGUMENT, "resolve_function.signature"));
  EXPECT_THAT(function->Wait().status(), StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(library->Current().request_id, 4u);
  EXPECT_EQ(function->Current().request_id, 0u);
  EXPECT_EQ(function->Current().handle, 0u);
  absl::Status call = ErrorStatus(v1::NOT_FOUND, "call.function_request");
  EXPECT_THAT(library->Explain(call), StatusIs(v1::NOT_FOUND));  // its answer has not come
  load.set_value(Loaded(1));
  EXPECT_EQ(library->handle(), 1u);
}

TEST(PendingHandle, AnAnswerWithoutTheExpectedResultIsInternal) {
  std::promise<absl::StatusOr<v1::Response>> answer;
  std::shared_ptr<PendingHandle> function = PendingHandle::Awaiting(
      9, v1::Request::kResolveFunction, v1::Response::kFunction, answer.get_future(), nullptr);
  answer.set_value(Loaded(1));  // a library where a function was due
  EXPECT_THAT(function->Wait().status(), StatusIs(v1::INTERNAL));
  EXPECT_EQ(function->handle(), 0u);
  // A stream that broke is the request's failure too.
  std::promise<absl::StatusOr<v1::Response>> broken;
  std::shared_ptr<PendingHandle> library = PendingHandle::Awaiting(
      10, v1::Request::kLoadLibrary, v1::Response::kLibrary, broken.get_future(), nullptr);
  broken.set_value(absl::UnavailableError("stream ended"));
  EXPECT_EQ(library->Wait().status().code(), absl::StatusCode::kUnavailable);
}

TEST(PendingHandle, AnAnsweredHandleIsNamedByItsHandleAtOnce) {
  std::shared_ptr<PendingHandle> library = PendingHandle::Answered(Loaded(2));
  EXPECT_EQ(library->Current().handle, 2u);
  EXPECT_EQ(library->Current().request_id, 0u);
  EXPECT_EQ(library->handle(), 2u);
}

}  // namespace
}  // namespace client_internal
}  // namespace ffibox
