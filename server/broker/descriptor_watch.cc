#include "server/broker/descriptor_watch.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

#include "core/thread_name.h"

namespace ffibox {

DescriptorWatch::DescriptorWatch(ShmChannel* channel, int hangup_fd, int control_fd)
    : channel_(channel), hangup_fd_(hangup_fd), control_fd_(control_fd) {}

absl::Status DescriptorWatch::Start() {
  absl::StatusOr<std::thread> thread = StartThread("ffibox-watch", [this] { Run(); });
  if (!thread.ok()) return thread.status();
  thread_ = *std::move(thread);
  return absl::OkStatus();
}

DescriptorWatch::~DescriptorWatch() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  Nudge();
  if (thread_.joinable()) thread_.join();
}

void DescriptorWatch::Add(int fd, std::function<bool(short revents)> on_ready) {
  {
    absl::MutexLock lock(&mu_);
    if (watches_.size() >= kMaxWatches) return;
    watches_.push_back(WatchedFd{fd, std::move(on_ready)});
  }
  Nudge();
}

void DescriptorWatch::DispatchReady() {
  // The thread does not touch the list while a dispatch is due.
  std::vector<WatchedFd> watches;
  {
    absl::MutexLock lock(&mu_);
    watches.swap(watches_);
  }
  std::vector<struct pollfd> fds;
  for (const WatchedFd& watch : watches) fds.push_back({watch.fd, POLLIN, 0});
  if (!fds.empty()) {
    while (poll(fds.data(), fds.size(), 0) < 0 && errno == EINTR) {
    }
  }
  std::vector<WatchedFd> kept;
  for (size_t i = 0; i < watches.size(); ++i) {
    const short revents = fds[i].revents;
    if (revents & POLLNVAL) continue;  // closed under the watch: nothing more to see
    if ((revents & (POLLIN | POLLHUP | POLLERR)) && !watches[i].on_ready(revents)) continue;
    kept.push_back(std::move(watches[i]));
  }
  {
    absl::MutexLock lock(&mu_);
    watches_ = std::move(kept);
    ready_.store(false);
  }
  Nudge();
}

void DescriptorWatch::DispatchReadyNow() {
  if (ready_.load()) return DispatchReady();
  struct pollfd fds[kMaxWatches];
  size_t count = 0;
  {
    absl::MutexLock lock(&mu_);
    for (const WatchedFd& watch : watches_) fds[count++] = {watch.fd, POLLIN, 0};
  }
  if (count == 0) return;
  int ready;
  while ((ready = poll(fds, count, 0)) < 0 && errno == EINTR) {
  }
  if (ready > 0) DispatchReady();
}

void DescriptorWatch::Nudge() {
  uint64_t one = 1;
  (void)!write(control_fd_, &one, sizeof(one));
}

void DescriptorWatch::Run() {
  bool hung_up = false;
  for (;;) {
    struct pollfd fds[2 + kMaxWatches];
    size_t count = 0;
    fds[count++] = {control_fd_, POLLIN, 0};
    // No events asked: only the hangup (or an error) is reported, never bytes a worker wrote.
    const size_t hangup_at = count;
    if (!hung_up) fds[count++] = {hangup_fd_, 0, 0};
    const size_t watches_at = count;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      if (!ready_.load()) {
        for (const WatchedFd& watch : watches_) fds[count++] = {watch.fd, POLLIN, 0};
      }
    }
    if (poll(fds, count, -1) < 0) {
      if (errno == EINTR) continue;
      return;  // not with valid arguments; the reader still ends at its deadlines
    }
    if (fds[0].revents & POLLIN) {
      uint64_t drained;
      (void)!read(control_fd_, &drained, sizeof(drained));
    }
    if (!hung_up && (fds[hangup_at].revents & (POLLHUP | POLLERR | POLLNVAL))) {
      hung_up = true;
      channel_->MarkPeerGone();
    }
    for (size_t i = watches_at; i < count; ++i) {
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) {
        ready_.store(true);
        channel_->Interrupt();
        break;
      }
    }
  }
}

}  // namespace ffibox
