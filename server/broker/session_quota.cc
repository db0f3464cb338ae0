#include "server/broker/session_quota.h"

#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace ffibox {

absl::StatusOr<std::unique_ptr<SessionQuota::Ticket>> SessionQuota::Acquire(
    const std::string& identity, uint32_t identity_limit) {
  absl::MutexLock lock(&mu_);
  if (open_ >= max_sessions_) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat("the server has its maximum of ", max_sessions_,
                                    " sessions open (limits.max_sessions); try again later"));
  }
  uint32_t& mine = open_by_identity_[identity];
  if (mine >= identity_limit) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat("identity \"", identity, "\" has its maximum of ",
                                    identity_limit, " sessions open; close one first"));
  }
  ++mine;
  ++open_;
  return std::make_unique<Ticket>(this, identity);
}

void SessionQuota::Release(const std::string& identity) {
  absl::MutexLock lock(&mu_);
  --open_;
  auto it = open_by_identity_.find(identity);
  if (it != open_by_identity_.end() && --it->second == 0) open_by_identity_.erase(it);
}

}  // namespace ffibox
