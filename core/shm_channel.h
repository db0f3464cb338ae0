// A two-way byte channel between two processes in one shared memfd: two single-producer
// single-consumer byte rings, one per direction, behind a small header (magic, version, the
// capacity of each ring). The broker's connection to each worker travels over one
// (server/broker/worker_connection.h, server/worker/broker_connection.h); core/framing.h puts
// length-prefixed frames on it.
//
// The creator makes the memfd, writes the header and seals the file against growing and
// shrinking, then against further seals; the peer maps it from a descriptor it inherited or
// received, and checks the seals, the size and the header before using it (a file it could be
// truncated under, or that is no memfd, is refused).
//
// Byte-stream semantics: Write blocks while the outbound ring is full and Read while the
// inbound one is empty, each until a deadline, so a message larger than a ring streams through
// it in pieces and memory stays bounded by the rings. Waiting is a short adaptive spin (longer
// after spins that found the peer's bytes, shorter after ones that did not; none on a single
// CPU), then futex_waitv on two words: one in the shared memory, which the peer wakes (it
// issues FUTEX_WAKE only when this end announced it sleeps), and one private to this process,
// which Interrupt, MarkPeerGone and Close wake, so that no peer can make a wake from this
// process miss its sleeper.
//
// The peer is untrusted: it can write anything anywhere in the shared memory, at any time.
// Each end keeps its own positions in private memory and only publishes them; every position
// it reads from the peer is checked before use (the peer's write position never runs more
// than a ring ahead of what this end consumed nor goes back, its read position never passes
// what this end produced nor goes back), and an impossible one breaks the channel for good
// (DATA_LOSS). The capacity is read once, at attach, and every offset is reduced modulo it,
// so no access leaves the mapping. Bytes are copied out of the shared memory before anyone
// parses them. What a hostile peer can still do: send garbage (the parser's business), stall
// (the caller's deadline), and wake this end needlessly (a wake that finds nothing is
// answered with a growing pause, so it cannot make this end spin).
//
// The channel cannot see its peer die. Its owner tells it (MarkPeerGone, e.g. on the hangup
// of a socket it watches), or names such a socket with WatchPeerHangup and the waits look at
// it at least every kHangupCheckInterval.
//
// Threads: one thread at a time reads (Read, ReadAvailable, WaitReadable, SpinReadable, and
// Mute/UnmuteSleepingReader) and one at a time writes (Write); the two may run concurrently.
// A reader may hand the read side to another thread while it sleeps (WaitReadable's lock).
// Interrupt, MarkPeerGone and Close are thread-safe.
#ifndef FFIBOX_CORE_SHM_CHANNEL_H_
#define FFIBOX_CORE_SHM_CHANNEL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace ffibox {

// The bounds of a ring's capacity (a power of two).
inline constexpr size_t kMinShmRingBytes = size_t{4} << 10;
inline constexpr size_t kMaxShmRingBytes = size_t{256} << 20;

// The bounds of a channel's shared area (SharedArea): a multiple of 64 KiB (the largest
// page size Linux uses), at most 1 GiB; it starts at the first multiple of 64 KiB after
// the rings, so it can be mapped on its own whatever the page size.
inline constexpr uint64_t kShmSharedAlignment = 64 << 10;
inline constexpr uint64_t kMaxShmSharedBytes = uint64_t{1} << 30;

// How often a wait looks at the socket named by WatchPeerHangup.
inline constexpr absl::Duration kHangupCheckInterval = absl::Seconds(1);

class ShmChannel {
 public:
  // Creates a channel whose rings hold `ring_bytes` each (a power of two within
  // [kMinShmRingBytes, kMaxShmRingBytes]; INVALID_ARGUMENT otherwise) in a new sealed memfd,
  // and returns the creator's end. RESOURCE_EXHAUSTED when the memfd cannot be made or mapped.
  static absl::StatusOr<std::unique_ptr<ShmChannel>> Create(size_t ring_bytes);

  // Makes a channel's sealed memfd, as Create does, for two other processes to Attach, one
  // as each End (the broker makes a client's channel to its worker this way); returns the
  // descriptor (the caller owns it). After the rings it holds a shared area of
  // `shared_bytes` (a multiple of kShmSharedAlignment up to kMaxShmSharedBytes; 0: none),
  // sparse until written. Errors as Create's, INVALID_ARGUMENT for a bad `shared_bytes`.
  static absl::StatusOr<int> CreateMemfd(size_t ring_bytes, uint64_t shared_bytes = 0);

  // Which end of the channel an attaching process takes: the creator's (a third process that
  // made the channel, e.g. the broker between a client and a worker, hands that end on) or
  // the peer's.
  enum class End { kCreator, kPeer };

  // Maps the channel in the memfd `fd` (not owned; it may be closed afterwards) as `end`.
  // The file is untrusted: FAILED_PRECONDITION unless it is a memfd sealed against growing,
  // shrinking and further seals (and not against writing), whose header has the magic, this
  // version and a valid capacity and shared area that match its size. Only the rings are
  // mapped; with `may_map_shared`, the channel keeps a copy of `fd` until SharedArea maps
  // the shared area (RESOURCE_EXHAUSTED when no descriptor is left for that copy).
  static absl::StatusOr<std::unique_ptr<ShmChannel>> Attach(int fd, End end = End::kPeer,
                                                            bool may_map_shared = false);

  ShmChannel(const ShmChannel&) = delete;
  ShmChannel& operator=(const ShmChannel&) = delete;
  // Close(), then unmaps.
  ~ShmChannel();

  // The memfd, for the peer to Attach (the creator's end only; -1 once CloseMemfd ran, and
  // always at the peer's end). Owned by the channel.
  int memfd() const { return memfd_; }
  // Closes the memfd (the mapping stays) once the peer has its copy.
  void CloseMemfd();
  // The capacity of each ring.
  size_t ring_bytes() const { return ring_bytes_; }
  // The size of the shared area (0: none).
  uint64_t shared_bytes() const { return shared_bytes_; }

  // The shared area, mapped at the first call (each end maps it at an address of its own).
  // Plain shared bytes, no ring: the channel's users agree on who writes where and when,
  // and the peer may write any of them at any time, so what is read from it is untrusted.
  // FAILED_PRECONDITION when the channel has none or was attached without
  // `may_map_shared`, RESOURCE_EXHAUSTED when it cannot be mapped (an address-space limit;
  // later calls say the same: the descriptor kept for the mapping is closed after the first
  // try, whatever its outcome). Thread-safe.
  absl::StatusOr<absl::Span<char>> SharedArea() ABSL_LOCKS_EXCLUDED(shared_mu_);

  // How many bytes a Write could put in the outbound ring now without waiting (0 when the
  // peer's read position is impossible). The writing thread's.
  size_t WritableNow();

  // Writes all of `bytes`, waiting while the outbound ring is full, until `deadline`.
  // DEADLINE_EXCEEDED when it passed (a prefix of `bytes` may have been written), UNAVAILABLE
  // when the peer closed the channel or is gone (MarkPeerGone) or this end was closed,
  // DATA_LOSS when the peer corrupted the ring.
  absl::Status Write(absl::string_view bytes, absl::Time deadline);
  // Writes `pieces` one after the other as Write does, publishing (and waking the peer) once
  // for as much of them as fits at a time.
  absl::Status Write(absl::Span<const absl::string_view> pieces, absl::Time deadline);
  // The same, waiting for room until `patience` after it first finds none: the clock is read
  // only then (a write that fits reads none).
  absl::Status Write(absl::Span<const absl::string_view> pieces, absl::Duration patience);

  // Reads exactly `size` bytes into `out`, waiting while the inbound ring is empty, until
  // `deadline`. DEADLINE_EXCEEDED when it passed (a prefix may have been read), CANCELLED
  // after Interrupt, UNAVAILABLE when the peer closed the channel or is gone and what it sent
  // before is read, DATA_LOSS when the peer corrupted the ring.
  absl::Status Read(char* out, size_t size, absl::Time deadline);

  // Consumes up to `max` bytes that are readable now, without waiting: hands them to
  // `copy_out` in at most two pieces, which point into the shared memory, where the peer may
  // still change them, so `copy_out` must copy them and nothing may parse them in place.
  // Returns how many were consumed (0 when none was readable); UNAVAILABLE when none was and
  // the peer closed the channel or is gone; DATA_LOSS when the peer corrupted the ring.
  absl::StatusOr<size_t> ReadAvailable(
      size_t max, absl::FunctionRef<void(const char* untrusted, size_t size)> copy_out);

  // Waits until bytes are readable, the peer closed the channel or is gone, or the ring is
  // found corrupt (then OK: ReadAvailable says which), until `deadline`. DEADLINE_EXCEEDED
  // when it passed, CANCELLED after Interrupt. With `unlocked_while_asleep` (held by the
  // caller), the wait releases that lock while it sleeps and takes it again before it looks
  // at the ring: the lock is the read side's, and a thread that takes it while the reader
  // sleeps may read in its place (SpinReadable, with the sleeper muted).
  absl::Status WaitReadable(absl::Time deadline, absl::Mutex* unlocked_while_asleep = nullptr);

  // A read side's wait that never sleeps: spins until bytes are readable (or the peer closed
  // the channel, is gone, or the ring is broken: OK, as WaitReadable), until `until`
  // (DEADLINE_EXCEEDED), or until an Interrupt, which it leaves pending for the sleeping
  // reader (CANCELLED).
  absl::Status SpinReadable(absl::Time until);

  // For a thread that reads in place of one asleep in WaitReadable (holding the lock that
  // sleeper released): the peer's writes stop waking the sleeper until UnmuteSleepingReader,
  // which announces the sleep again and wakes the sleeper at once when bytes are readable.
  void MuteSleepingReader();
  void UnmuteSleepingReader();

  // Makes the blocked (or the next) wait of the reading side return CANCELLED, promptly.
  // Thread-safe.
  void Interrupt();

  // Declares the peer gone (its process ended): waiting writes and later ones return
  // UNAVAILABLE; reads return what the peer sent before, then UNAVAILABLE. Wakes both sides
  // promptly. Thread-safe, idempotent.
  void MarkPeerGone();

  // Whether the peer's end is closed (by the peer, or for it: the broker closes a dead
  // worker's end) or the peer is gone (MarkPeerGone). Thread-safe.
  bool PeerEnded();

  // While waiting, look at the stream socket `fd` (not owned; it outlives the channel) at
  // least every kHangupCheckInterval: its hangup marks the peer gone. Call before the first
  // wait.
  void WatchPeerHangup(int fd) { hangup_fd_ = fd; }

  // Tells the peer this end is done: it reads what was sent, then UNAVAILABLE, and its writes
  // fail with UNAVAILABLE. This end's later writes fail the same way. Thread-safe, idempotent.
  // A third process holding an attachment of an end closes that end for its owner this way
  // (the broker closes a dead worker's end of a client's channel).
  void Close();

  // The longest a read's spin may grow to before it sleeps (kDefaultLongestReadSpin). A
  // reader whose peer pauses longer between messages than that (a client in an interpreted
  // language) sleeps before each and costs the peer a FUTEX_WAKE and the wait for its
  // wakeup; a longer spin trades this end's CPU for that. Call before a read, on the thread
  // that reads (or before the first read).
  //
  // A bound raised (a peer whose next message follows soon) is spun whole at once up to
  // `first` (at most `longest`), not grown into after sleeps that each cost a wakeup. A spin
  // that found the message doubles it up to `first`; beyond that, only the third of three
  // waits in a row that slept and took no longer than `longest` sets it, to twice that wait.
  // So a peer that pauses longer than `longest` costs no more spinning than one that pauses
  // `first`, and one whose pauses fit is caught without sleeping.
  static constexpr absl::Duration kDefaultLongestReadSpin = absl::Microseconds(20);
  void SetLongestReadSpin(absl::Duration longest, absl::Duration first);
  void SetLongestReadSpin(absl::Duration longest) { SetLongestReadSpin(longest, longest); }

  // Words in the shared memory outside the rings, for what the channel's users publish to
  // each other (the worker's call in progress on a same-host channel). Either side may write
  // any of them at any time: a value read is untrusted. `index` < kStatusWords. A store is a
  // release and a load (at least) an acquire: a reader that sees a word sees the stores made
  // before it, status words and channel alike. A store is no full barrier (a plain write, not
  // a locked one: the worker makes six on the path of every call).
  static constexpr int kStatusWords = 8;
  uint64_t LoadStatusWord(int index) const;
  void StoreStatusWord(int index, uint64_t value);

 private:
  struct Ring;
  class AdaptiveSpin;

  ShmChannel(void* mapping, size_t mapping_bytes, size_t ring_bytes, int memfd, bool creator);

  // The ring this end writes to and the one it reads from.
  Ring& outbound() const;
  Ring& inbound() const;

  // The peer's positions, checked against this end's own (DATA_LOSS breaks the channel).
  absl::StatusOr<uint64_t> CheckedPeerHead();
  absl::StatusOr<uint64_t> CheckedPeerTail();
  // Breaks the channel for good with `message`, wakes this end's waiting thread (it then
  // finds the breach) and returns its DATA_LOSS.
  absl::Status Break(std::string message) ABSL_LOCKS_EXCLUDED(broken_mu_);
  absl::Status BrokenStatus() const ABSL_LOCKS_EXCLUDED(broken_mu_);

  // Write's body: waits for room until `deadline()`, asked only when there is none.
  absl::Status WriteUntil(absl::Span<const absl::string_view> pieces,
                          absl::FunctionRef<absl::Time()> deadline);
  // Waits until `ready()`, spinning with `spin`, then sleeping on `shared_word` (set to 1 to
  // announce the sleep) and on the private word. `reading`: an Interrupt ends the wait with
  // CANCELLED.
  absl::Status Wait(uint32_t* shared_word, AdaptiveSpin& spin, bool reading,
                    absl::FunctionRef<bool()> ready, absl::Time deadline,
                    absl::Mutex* unlocked_while_asleep = nullptr);
  // Whether a read would find bytes, the peer's end or a broken ring.
  bool Readable();
  // Wakes the peer sleeping on `shared_word` if it announced it sleeps.
  static void WakePeer(uint32_t* shared_word);
  // Wakes this process's waiters.
  void WakeLocal();
  // Whether the socket of WatchPeerHangup hung up (then the peer is marked gone).
  bool PeerHungUp();

  void* const mapping_;
  const size_t mapping_bytes_;
  const size_t ring_bytes_;  // read once: never re-read from the shared header
  int memfd_;
  const bool creator_;
  uint64_t shared_bytes_ = 0;  // read once, at attach
  absl::Mutex shared_mu_;
  int shared_fd_ ABSL_GUARDED_BY(shared_mu_) = -1;         // until the area is mapped
  char* shared_ ABSL_GUARDED_BY(shared_mu_) = nullptr;     // the mapped area
  absl::Status shared_error_ ABSL_GUARDED_BY(shared_mu_);  // why it could not be mapped

  int hangup_fd_ = -1;

  // This end's positions: the authority, never read back from the shared memory.
  uint64_t head_ = 0;       // bytes written to the outbound ring (the writing thread's)
  uint64_t seen_tail_ = 0;  // the peer's last checked read position in it
  uint64_t tail_ = 0;       // bytes read from the inbound ring (the reading thread's)
  uint64_t seen_head_ = 0;  // the peer's last checked write position in it
  std::unique_ptr<AdaptiveSpin> read_spin_;
  std::unique_ptr<AdaptiveSpin> write_spin_;

  alignas(4) uint32_t local_wake_ = 0;  // private futex word: bumped by local wakes
  std::atomic<bool> interrupted_{false};
  std::atomic<uint32_t> mutes_{0};  // MuteSleepingReader calls
  std::atomic<bool> peer_gone_{false};
  std::atomic<bool> closed_{false};
  std::atomic<bool> broken_{false};
  mutable absl::Mutex broken_mu_;
  std::string broken_message_ ABSL_GUARDED_BY(broken_mu_);  // the first breach found
};

}  // namespace ffibox

#endif  // FFIBOX_CORE_SHM_CHANNEL_H_
