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

TEST(AnswerDeadlinesTest, NothingWaitingIsNeverOverdue) {
  AnswerDeadlines deadlines(absl::Seconds(5));
  const AnswerDeadlines::Look look =
      deadlines.LookAt(kStart + absl::Hours(1), absl::InfinitePast());
  EXPECT_FALSE(look.overdue);
  // A request sent from then on is due a margin later at the soonest.
  EXPECT_EQ(look.look_again, kStart + absl::Hours(1) + absl::Seconds(5));
}

TEST(AnswerDeadlinesTest, SilenceLongerThanTheBoundIsOverdue) {
  AnswerDeadlines deadlines(absl::Seconds(5));
  deadlines.Sent(absl::Seconds(5), kStart);
  AnswerDeadlines::Look look = deadlines.LookAt(kStart + absl::Seconds(4), absl::InfinitePast());
  EXPECT_FALSE(look.overdue);
  EXPECT_EQ(look.look_again, kStart + absl::Seconds(5));
  look = deadlines.LookAt(kStart + absl::Seconds(5), absl::InfinitePast());
  EXPECT_TRUE(look.overdue);
  EXPECT_EQ(look.silence, absl::Seconds(5));
  EXPECT_EQ(look.bound, absl::Seconds(5));
}

TEST(AnswerDeadlinesTest, AMessageFromTheServerStartsTheSilenceAgain) {
  AnswerDeadlines deadlines(absl::Seconds(5));
  deadlines.Sent(absl::Seconds(5), kStart);
  const absl::Time heard = kStart + absl::Seconds(4);
  EXPECT_FALSE(deadlines.LookAt(kStart + absl::Seconds(8), heard).overdue);
  EXPECT_TRUE(deadlines.LookAt(kStart + absl::Seconds(9), heard).overdue);
}

TEST(AnswerDeadlinesTest, ARequestQueuedBehindASlowOneGetsTheSlowOnesBound) {
  AnswerDeadlines deadlines(absl::Seconds(1));
  deadlines.Sent(absl::Seconds(31), kStart);                    // a call of 30 s
  deadlines.Sent(absl::Seconds(2), kStart + absl::Seconds(1));  // a short one behind it
  EXPECT_FALSE(deadlines.LookAt(kStart + absl::Seconds(20), absl::InfinitePast()).overdue);
  // The slow one answered at 25 s: the short one now has its own bound from then.
  deadlines.Answered(absl::Seconds(31));
  const absl::Time heard = kStart + absl::Seconds(25);
  EXPECT_FALSE(deadlines.LookAt(kStart + absl::Seconds(26), heard).overdue);
  const AnswerDeadlines::Look look = deadlines.LookAt(kStart + absl::Seconds(27), heard);
  EXPECT_TRUE(look.overdue);
  EXPECT_EQ(look.bound, absl::Seconds(2));
}

TEST(AnswerDeadlinesTest, TheWaitStartsAtTheRequestThatFoundNoneWaiting) {
  AnswerDeadlines deadlines(absl::Seconds(5));
  deadlines.Sent(absl::Seconds(5), kStart);
  deadlines.Answered(absl::Seconds(5));
  // Idle for an hour, with the last message long ago: a new request gets its whole bound.
  const absl::Time later = kStart + absl::Hours(1);
  deadlines.Sent(absl::Seconds(5), later);
  EXPECT_FALSE(deadlines.LookAt(later + absl::Seconds(4), kStart).overdue);
  EXPECT_TRUE(deadlines.LookAt(later + absl::Seconds(5), kStart).overdue);
}

TEST(AnswerDeadlinesTest, ForgivenSilenceCountsAgain) {
  AnswerDeadlines deadlines(absl::Seconds(5));
  deadlines.Sent(absl::Seconds(5), kStart);
  deadlines.Forgive(kStart + absl::Seconds(60));
  EXPECT_FALSE(deadlines.LookAt(kStart + absl::Seconds(61), absl::InfinitePast()).overdue);
  EXPECT_TRUE(deadlines.LookAt(kStart + absl::Seconds(65), absl::InfinitePast()).overdue);
}

TEST(AnswerDeadlinesTest, ClearedOrAnsweredRequestsAreNotWaitedFor) {
  AnswerDeadlines deadlines(absl::Seconds(5));
  deadlines.Sent(absl::Seconds(5), kStart);
  deadlines.Sent(absl::Seconds(7), kStart);
  deadlines.Clear();
  deadlines.Answered(absl::Seconds(5));  // an answer after the clear changes nothing
  EXPECT_FALSE(deadlines.LookAt(kStart + absl::Hours(1), absl::InfinitePast()).overdue);
}

TEST(AnswerDeadlinesTest, ManyDistinctBoundsAreForgottenOnceAnswered) {
  AnswerDeadlines deadlines(absl::Seconds(1));
  for (int i = 1; i <= 100; ++i) {
    deadlines.Sent(absl::Seconds(i), kStart);
    deadlines.Answered(absl::Seconds(i));
  }
  deadlines.Sent(absl::Seconds(3), kStart + absl::Seconds(1));
  const AnswerDeadlines::Look look = deadlines.LookAt(kStart + absl::Seconds(4), kStart);
  EXPECT_TRUE(look.overdue);
  EXPECT_EQ(look.bound, absl::Seconds(3));
}

}  // namespace
}  // namespace client_internal
}  // namespace ffibox
