#include "server/broker/spin_turn.h"

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

TEST(SpinTurn, OneSessionAtATimeUntilItLapsesOrIsReleased) {
  SpinTurn turn;
  int a = 0;
  int b = 0;
  const absl::Time start = absl::FromUnixSeconds(1000);
  EXPECT_TRUE(turn.Take(&a, start)) << "a free turn is taken";
  EXPECT_FALSE(turn.Take(&b, start + absl::Microseconds(500))) << "a's turn has not lapsed";
  // a's next request, within the lapse, keeps the turn for another lapse from then.
  EXPECT_TRUE(turn.Take(&a, start + absl::Microseconds(900)));
  EXPECT_FALSE(turn.Take(&b, start + kSpinTurnLapse + absl::Microseconds(100)));
  // a sent nothing for a whole lapse: b takes the turn, and a no longer has it.
  EXPECT_TRUE(turn.Take(&b, start + absl::Microseconds(900) + kSpinTurnLapse));
  EXPECT_FALSE(turn.Take(&a, start + absl::Microseconds(950) + kSpinTurnLapse));
  // b ends: a takes the turn at once.
  turn.Release(&a);  // not the holder: changes nothing
  EXPECT_FALSE(turn.Take(&a, start + absl::Microseconds(960) + kSpinTurnLapse));
  turn.Release(&b);
  EXPECT_TRUE(turn.Take(&a, start + absl::Microseconds(970) + kSpinTurnLapse));
}

// A call that runs longer than the lapse: its worker spins after its answer, so the turn lasts
// a whole lapse from the answer, not only from the request.
TEST(SpinTurn, AnAnswerKeepsTheTurnForALapseAfterIt) {
  SpinTurn turn;
  int a = 0;
  int b = 0;
  const absl::Time start = absl::FromUnixSeconds(1000);
  EXPECT_TRUE(turn.Take(&a, start));
  const absl::Time answered = start + 5 * kSpinTurnLapse;
  turn.Answered(&b, answered);  // not the holder: changes nothing
  turn.Answered(&a, answered);
  EXPECT_FALSE(turn.Take(&b, answered + kSpinTurnLapse - absl::Microseconds(1)))
      << "a's worker may still spin";
  EXPECT_TRUE(turn.Take(&b, answered + kSpinTurnLapse));
  // An earlier message does not shorten a lapse.
  turn.Answered(&b, answered);
  EXPECT_FALSE(turn.Take(&a, answered + 2 * kSpinTurnLapse - absl::Microseconds(1)));
}

}  // namespace
}  // namespace ffibox
