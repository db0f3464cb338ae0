// Per-server session quotas: at most `max_sessions` open sessions in all, and at most an
// identity's own limit per identity. The service takes a SessionQuota::Ticket for each
// stream before it creates the Session; the ticket gives the slot back when destroyed.
#ifndef FFIBOX_SERVER_BROKER_SESSION_QUOTA_H_
#define FFIBOX_SERVER_BROKER_SESSION_QUOTA_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace ffibox {

class SessionQuota {
 public:
  // Holds one session slot of one identity; returns it when destroyed.
  class Ticket {
   public:
    Ticket(SessionQuota* quota, std::string identity)
        : quota_(quota), identity_(std::move(identity)) {}
    ~Ticket() { quota_->Release(identity_); }
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;

   private:
    SessionQuota* const quota_;
    const std::string identity_;
  };

  explicit SessionQuota(uint32_t max_sessions) : max_sessions_(max_sessions) {}

  // A slot for a new session of `identity`, which may hold at most `identity_limit` at once.
  // RESOURCE_EXHAUSTED naming the limit when the server or the identity is full.
  absl::StatusOr<std::unique_ptr<Ticket>> Acquire(const std::string& identity,
                                                  uint32_t identity_limit);

 private:
  void Release(const std::string& identity);

  const uint32_t max_sessions_;
  absl::Mutex mu_;
  uint32_t open_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, uint32_t> open_by_identity_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_SESSION_QUOTA_H_
