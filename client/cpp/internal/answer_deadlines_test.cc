#include "client/cpp/internal/answer_deadlines.h"

#include "gtest/gtest.h"

namespace ffibox {
namespace client_internal {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000);

v1::Request CallWithTimeout(uint32_t timeout_ms) {
  v1::Request request;
  request.mutable_call()->set_timeout_ms(timeout_ms);
  return request;
}

TEST(AnswerDeadlinesTest, ACallIsDueWithinItsDeadlinePlusTheMargin) {
  AnswerDeadlines deadlines(absl::Seconds(10));
  deadlines.SetCallTimeout(absl::Seconds(30));
  EXPECT_EQ(deadlines.BoundOf(CallWithTimeout(0)), absl::Seconds(40));
  EXPECT_EQ(deadlines.BoundOf(CallWithTimeout(500)), absl::Milliseconds(10500));
  v1::Request load;
  load.mutable_load_library()->set_path("libm.so.6");
  EXPECT_EQ(deadlines.BoundOf(load), absl::Seconds(40));
}

TEST(AnswerDeadlinesTest, WhatTheBrokerAnswersAtOnceGetsTheMarginAlone) {
  AnswerDeadlines deadlines(absl::Seconds(2));
  deadlines.SetCallTimeout(absl::Seconds(30));
  v1::Request request;
  request.mutable_open();
  EXPECT_EQ(deadlines.BoundOf(request), absl::Seconds(2));
  request.mutable_ping();
  EXPECT_EQ(deadlines.BoundOf(request), absl::Seconds(2));
  request.mutable_parse_declaration()->set_declaration("int f(void)");
  EXPECT_EQ(deadlines.BoundOf(request), absl::Seconds(2));
  request.mutable_callback_return()->set_invocation(1);
  EXPECT_EQ(deadlines.BoundOf(request), absl::Seconds(2));
}

TEST(AnswerDeadlinesTest, ABatchIsDueWithinItsOwnDeadlineElseItsCallsSummed) {
  AnswerDeadlines deadlines(absl::Seconds(1));
  deadlines.SetCallTimeout(absl::Seconds(3));
  v1::Request batch;
  batch.mutable_batch()->add_calls()->set_timeout_ms(500);
  batch.mutable_batch()->add_calls();
  EXPECT_EQ(deadlines.BoundOf(batch), absl::Milliseconds(4500));
  batch.mutable_batch()->set_timeout_ms(2000);
  EXPECT_EQ(deadlines.BoundOf(batch), absl::Seconds(3));
}

TEST(AnswerDeadlinesTest, ACallOnTheChannelIsDueWithinItsDeadlinePlusTheMargin) {
  AnswerDeadlines deadlines(absl::Seconds(10));
  deadlines.SetCallTimeout(absl::Seconds(30));
  EXPECT_EQ(deadlines.BoundOfCall(absl::ZeroDuration()), absl::Seconds(40));
  EXPECT_EQ(deadlines.BoundOfCall(absl::Seconds(2)), absl::Seconds(12));
}

TEST(AnswerDeadlinesTest, NothingWaitingIsNeverOverdue) {
  AnswerDeadlines deadlines(absl::Seconds(5));
  const absl::Time now = kStart + absl::Hours(1);
  const AnswerDeadlines::Look look = deadlines.LookAt(now, kStart, absl::ZeroDuration());
  EXPECT_FALSE(look.overdue);
  // A request sent from then on is due a margin later at the soonest.
  EXPECT_EQ(look.look_again, now + absl::Seconds(5));
}

TEST(AnswerDeadlinesTest, SilenceAsLongAsTheLongestBoundIsOverdue) {
  AnswerDeadlines deadlines(absl::Seconds(5));
  AnswerDeadlines::Look look =
      deadlines.LookAt(kStart + absl::Seconds(6), kStart, absl::Seconds(7));
  EXPECT_FALSE(look.overdue);
  EXPECT_EQ(look.look_again, kStart + absl::Seconds(7));
  // As long as the bound: confirmed by a look kOverdueConfirmation later.
  look = deadlines.LookAt(kStart + absl::Seconds(7), kStart, absl::Seconds(7));
  EXPECT_FALSE(look.overdue);
  EXPECT_EQ(look.look_again, kStart + absl::Seconds(7) + kOverdueConfirmation);
  look = deadlines.LookAt(kStart + absl::Seconds(7) + kOverdueConfirmation / 2, kStart,
                          absl::Seconds(7));
  EXPECT_FALSE(look.overdue);
  EXPECT_EQ(look.look_again, kStart + absl::Seconds(7) + kOverdueConfirmation);
  look =
      deadlines.LookAt(kStart + absl::Seconds(7) + kOverdueConfirmation, kStart, absl::Seconds(7));
  EXPECT_TRUE(look.overdue);
  EXPECT_EQ(look.silence, absl::Seconds(7) + kOverdueConfirmation);
  EXPECT_EQ(look.bound, absl::Seconds(7));
}

TEST(AnswerDeadlinesTest, AMessageReadBeforeTheConfirmingLookStartsTheSilenceAgain) {
  // The server answered while this process was stopped until just after a look was due: the
  // reader takes the answer before the look that would confirm the silence.
  AnswerDeadlines deadlines(absl::Seconds(5));
  const absl::Time due = kStart + absl::Seconds(7);
  EXPECT_FALSE(deadlines.LookAt(due, kStart, absl::Seconds(7)).overdue);
  const absl::Time heard = due + kOverdueConfirmation / 2;
  AnswerDeadlines::Look look =
      deadlines.LookAt(due + kOverdueConfirmation, heard, absl::Seconds(7));
  EXPECT_FALSE(look.overdue);
  EXPECT_EQ(look.look_again, due + kOverdueConfirmation + absl::Seconds(5));
  // A silence found as long as the bound again is confirmed afresh.
  const absl::Time due_again = heard + absl::Seconds(7);
  EXPECT_FALSE(deadlines.LookAt(due_again, heard, absl::Seconds(7)).overdue);
  EXPECT_TRUE(deadlines.LookAt(due_again + kOverdueConfirmation, heard, absl::Seconds(7)).overdue);
}

TEST(AnswerDeadlinesTest, ALongBoundIsLookedAtAgainWithinAMargin) {
  // A request of an hour may be answered at any time, and the one left waiting then may be
  // due a margin after that answer: the next look comes no later than a margin from now.
  AnswerDeadlines deadlines(absl::Seconds(5));
  const AnswerDeadlines::Look look =
      deadlines.LookAt(kStart + absl::Seconds(1), kStart, absl::Hours(1));
  EXPECT_FALSE(look.overdue);
  EXPECT_EQ(look.look_again, kStart + absl::Seconds(6));
}

}  // namespace
}  // namespace client_internal
}  // namespace ffibox
