// The thread that watches a worker connection's descriptors while its reader sleeps on the
// shared-memory channel (server/broker/worker_connection.h).
//
// The reader waits on a futex and cannot poll descriptors, so this thread does, for two kinds:
//   - the hangup socket, whose other end only the worker holds: its hangup marks the channel's
//     peer gone at once (ShmChannel::MarkPeerGone), which ends a read after the worker's last
//     bytes and a write waiting for room;
//   - the descriptors of Add (the worker's output pipes, its seccomp listener): one that is
//     ready wakes the reader (ShmChannel::Interrupt), which runs their callbacks on its own
//     thread (DispatchReady). Until it has, they are not polled again (they stay ready until
//     drained); the hangup socket still is. Before a reply goes on, the reader looks at them
//     itself (DispatchReadyNow): the worker's output written before its reply is relayed
//     before the reply, even when the reply won the race to the reader.
#ifndef FFIBOX_SERVER_BROKER_DESCRIPTOR_WATCH_H_
#define FFIBOX_SERVER_BROKER_DESCRIPTOR_WATCH_H_

#include <atomic>
#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/shm_channel.h"

namespace ffibox {

class DescriptorWatch {
 public:
  // `channel` (not owned) outlives the watch; `hangup_fd` and the eventfd `control_fd` (not
  // owned) stay open until it is destroyed. Start starts its thread.
  DescriptorWatch(ShmChannel* channel, int hangup_fd, int control_fd);
  // Stops and joins the thread.
  ~DescriptorWatch();

  // Starts the watch's thread: RESOURCE_EXHAUSTED when none can be started.
  absl::Status Start();

  DescriptorWatch(const DescriptorWatch&) = delete;
  DescriptorWatch& operator=(const DescriptorWatch&) = delete;

  // Watches `fd` (not owned) for reading or hangup; `on_ready` gets poll's revents on the
  // reader's thread and returns whether to keep watching. At most kMaxWatches; more are
  // ignored. Call before the reader's first DispatchReady.
  void Add(int fd, std::function<bool(short revents)> on_ready) ABSL_LOCKS_EXCLUDED(mu_);

  // Whether a watched descriptor is ready and waits for DispatchReady.
  bool has_ready() const { return ready_.load(); }

  // On the reader's thread: runs the callbacks of the watched descriptors that are ready now,
  // drops those whose callback returned false, and lets the thread poll them again.
  void DispatchReady() ABSL_LOCKS_EXCLUDED(mu_);

  // On the reader's thread, before it hands on a reply: DispatchReady if a watched
  // descriptor is ready now, whether or not the thread has seen it yet (one poll, no wait).
  // What the worker wrote to its output before it replied then goes to the client first.
  void DispatchReadyNow() ABSL_LOCKS_EXCLUDED(mu_);

  static constexpr size_t kMaxWatches = 4;

 private:
  struct WatchedFd {
    int fd;
    std::function<bool(short revents)> on_ready;
  };

  // Makes the thread build its poll set again (or stop).
  void Nudge();
  void Run();

  ShmChannel* const channel_;
  const int hangup_fd_;
  const int control_fd_;
  std::atomic<bool> ready_{false};
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<WatchedFd> watches_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_DESCRIPTOR_WATCH_H_
