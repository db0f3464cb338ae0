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

}  // namespace
}  // namespace ffibox
