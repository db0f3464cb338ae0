#include "server/broker/spin_turn.h"

#include <algorithm>

namespace ffibox {

bool SpinTurn::Take(const void* session, absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (holder_ != session && holder_ != nullptr && now < lapses_) return false;
  holder_ = session;
  lapses_ = now + kSpinTurnLapse;
  return true;
}

void SpinTurn::Answered(const void* session, absl::Time now) {
  // A session becomes the holder only in its own Take, before the request whose reply comes
  // here; a stale read that it still holds is looked at again under the lock.
  if (holder_.load(std::memory_order_relaxed) != session) return;
  absl::MutexLock lock(&mu_);
  if (holder_ == session) lapses_ = std::max(lapses_, now + kSpinTurnLapse);
}

void SpinTurn::Release(const void* session) {
  absl::MutexLock lock(&mu_);
  if (holder_ == session) holder_ = nullptr;
}

SpinTurn& SpinTurn::OfProcess() {
  static SpinTurn* const turn = new SpinTurn();
  return *turn;
}

}  // namespace ffibox
