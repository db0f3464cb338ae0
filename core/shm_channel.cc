#include "core/shm_channel.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/status_macros.h"

namespace ffibox {
namespace {

// "ffibox-c" little-endian, then the layout's version.
constexpr uint64_t kMagic = 0x632d786f62666666;
constexpr uint32_t kVersion = 2;
// The header and both rings' positions share the first page; the data follows, one ring
// after the other.
constexpr size_t kControlBytes = 4096;
constexpr unsigned kRequiredSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
constexpr unsigned kRefusedSeals = F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;

// How long a wait spins before it sleeps: an adaptive budget within these bounds. A futex
// wake and the sleeper's return cost a few microseconds on each side, so spinning much longer
// than that does not pay (the longest: ShmChannel::kDefaultLongestReadSpin, unless a reader
// sets its own).
constexpr int64_t kMinSpinNanos = 1000;
constexpr int64_t kFirstSpinNanos = 5000;
// Pauses between two looks at the clock.
constexpr uint32_t kPausesPerClockCheck = 8;
// A spin grows past its first length once this many waits in a row slept and took no longer
// than its longest (AdaptiveSpin::Observe). Two were not enough: a session's start (a load,
// a resolve, the first call) grew the spin before its first call, whose wait then spun
// beside the client's and the broker's threads and took 50 µs longer.
constexpr int kFittingWaitsToGrow = 3;
// After wakes that found nothing (a peer that wakes or rewrites the futex word for nothing),
// a wait pauses before it sleeps on the shared word again: from kFirstPause, doubling, to
// kMaxPause. One stale wake is normal (a wake meant for bytes already read); only the
// following ones pause.
constexpr absl::Duration kFirstPause = absl::Microseconds(50);
constexpr absl::Duration kMaxPause = absl::Milliseconds(20);
constexpr int kStaleWakesBeforePause = 1;
// The longest single sleep (a deadline beyond it just loops).
constexpr absl::Duration kLongestSleep = absl::Hours(1);

struct SharedHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t ring_bytes;
  uint64_t shared_bytes;  // the shared area after the rings (ShmChannel::SharedArea)
};

// The shared words of one ring, each line written by one side only (but the peer may
// write anything anywhere). `waiting` is a futex word: 1 while its side sleeps; the other
// side exchanges it for 0 and wakes it.
struct alignas(64) ProducerLine {
  uint64_t head;     // bytes written in total
  uint32_t closed;   // nonzero: the producer writes no more
  uint32_t waiting;  // the producer sleeps until there is room
};
struct alignas(64) ConsumerLine {
  uint64_t tail;     // bytes read in total
  uint32_t closed;   // nonzero: the consumer reads no more
  uint32_t waiting;  // the consumer sleeps until there are bytes
};

// The status words (ShmChannel::kStatusWords) live in the second half of the control page.
constexpr size_t kStatusWordsOffset = kControlBytes / 2;

size_t MappingBytes(size_t ring_bytes) { return kControlBytes + 2 * ring_bytes; }

// Where the shared area starts: past the rings, aligned for its own mapping.
uint64_t SharedAreaOffset(size_t ring_bytes) {
  return (MappingBytes(ring_bytes) + kShmSharedAlignment - 1) / kShmSharedAlignment *
         kShmSharedAlignment;
}

// The size of a channel's file.
uint64_t FileBytes(size_t ring_bytes, uint64_t shared_bytes) {
  return shared_bytes == 0 ? MappingBytes(ring_bytes) : SharedAreaOffset(ring_bytes) + shared_bytes;
}

bool IsValidSharedBytes(uint64_t shared_bytes) {
  return shared_bytes <= kMaxShmSharedBytes && shared_bytes % kShmSharedAlignment == 0;
}

bool IsValidRingBytes(uint64_t ring_bytes) {
  return ring_bytes >= kMinShmRingBytes && ring_bytes <= kMaxShmRingBytes &&
         (ring_bytes & (ring_bytes - 1)) == 0;
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

uint64_t Load(const uint64_t* word) { return __atomic_load_n(word, __ATOMIC_SEQ_CST); }
uint32_t Load(const uint32_t* word) { return __atomic_load_n(word, __ATOMIC_SEQ_CST); }
void Store(uint64_t* word, uint64_t value) { __atomic_store_n(word, value, __ATOMIC_SEQ_CST); }
void Store(uint32_t* word, uint32_t value) { __atomic_store_n(word, value, __ATOMIC_SEQ_CST); }

void FutexWake(uint32_t* word, bool shared) {
  // Everyone: a hostile peer may park its own threads on the word to swallow a single wake.
  syscall(SYS_futex, word, shared ? FUTEX_WAKE : FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

// One word to sleep on while it holds `expected`.
struct SleepWord {
  uint32_t* word;
  uint32_t expected;
  bool shared;
};

enum class SleepResult { kWoken, kTimedOut };

// Sleeps on `words` until one is woken or changes, or until `until`. Returns how it ended
// (a signal counts as a wake), or INTERNAL when futex_waitv fails otherwise.
absl::StatusOr<SleepResult> SleepOn(std::initializer_list<SleepWord> words, absl::Time until) {
  struct futex_waitv waiters[2] = {};
  unsigned count = 0;
  for (const SleepWord& word : words) {
    waiters[count].val = word.expected;
    waiters[count].uaddr = reinterpret_cast<uintptr_t>(word.word);
    waiters[count].flags = FUTEX_32 | (word.shared ? 0 : FUTEX_PRIVATE_FLAG);
    ++count;
  }
  struct timespec timeout;
  struct timespec* timeout_arg = nullptr;
  if (until != absl::InfiniteFuture()) {
    absl::Duration left = std::min(until - absl::Now(), kLongestSleep);
    if (left <= absl::ZeroDuration()) return SleepResult::kTimedOut;
    clock_gettime(CLOCK_MONOTONIC, &timeout);
    timeout = absl::ToTimespec(absl::DurationFromTimespec(timeout) + left);
    timeout_arg = &timeout;
  }
  if (syscall(SYS_futex_waitv, waiters, count, 0, timeout_arg, CLOCK_MONOTONIC) >= 0) {
    return SleepResult::kWoken;
  }
  switch (errno) {
    case EAGAIN:  // a word no longer held its value
    case EINTR:
      return SleepResult::kWoken;
    case ETIMEDOUT:
      return SleepResult::kTimedOut;
    default:
      return absl::InternalError(absl::StrCat("futex_waitv: ", strerror(errno)));
  }
}

// futex_waitv came with Linux 5.16; a kernel without it cannot run a channel.
absl::Status CheckFutexWaitv() {
  uint32_t word = 0;
  struct futex_waitv waiter = {};
  waiter.val = 1;  // not the word's value: returns at once
  waiter.uaddr = reinterpret_cast<uintptr_t>(&word);
  waiter.flags = FUTEX_32 | FUTEX_PRIVATE_FLAG;
  if (syscall(SYS_futex_waitv, &waiter, 1, 0, nullptr, CLOCK_MONOTONIC) < 0 && errno == ENOSYS) {
    return absl::FailedPreconditionError(
        "futex_waitv is unavailable: a shared-memory channel needs Linux 5.16 or later");
  }
  return absl::OkStatus();
}

}  // namespace

struct ShmChannel::Ring {
  ProducerLine producer;
  ConsumerLine consumer;
};

class ShmChannel::AdaptiveSpin {
 public:
  AdaptiveSpin() : budget_nanos_(single_cpu() ? 0 : kFirstSpinNanos) {}

  // Spins while `ready()` is false, for the current budget; true once it is true. The budget
  // doubles (up to the first spin's length, never lower than it is) after a spin that found
  // it true and halves after one that gave up (Observe may raise it again after the sleep
  // that followed): spinning pays
  // when the peer answers while it runs on another CPU, and is pure loss when the peer is
  // descheduled or slow (and on a single CPU, where it never spins).
  bool Spin(absl::FunctionRef<bool()> ready) {
    if (budget_nanos_ == 0) return ready();
    const int64_t start = MonotonicNanos();
    for (uint32_t i = 1;; ++i) {
      if (ready()) {
        budget_nanos_ = std::max(budget_nanos_, std::min(budget_nanos_ * 2, first_nanos_));
        // The peer's pace fits the first spin: a long pause after this is a one-off.
        if (budget_nanos_ <= first_nanos_) fitted_ = 0;
        return true;
      }
      CpuRelax();
      if (i % kPausesPerClockCheck == 0 && MonotonicNanos() - start >= budget_nanos_) break;
    }
    budget_nanos_ = std::max(budget_nanos_ / 2, kMinSpinNanos);
    return false;
  }

  // After a spin gave up and the wait slept: the whole wait took `waited_nanos`. A wait the
  // first spin would have covered sets the budget to twice it (bounded), so a peer whose
  // pauses are longer than the budget but shorter than that spin is caught again; beyond the
  // first spin, up to the longest, only the last of kFittingWaitsToGrow waits in a row that
  // fit does (a few long pauses may be a one-off: a session's start).
  void Observe(int64_t waited_nanos) {
    if (budget_nanos_ == 0) return;
    const bool fits = waited_nanos <= max_nanos_;
    fitted_ = fits ? std::min(fitted_ + 1, kFittingWaitsToGrow) : 0;
    const int64_t bound = fitted_ >= kFittingWaitsToGrow ? max_nanos_ : first_nanos_;
    if (waited_nanos > bound) return;
    budget_nanos_ = std::clamp(2 * waited_nanos, kMinSpinNanos, bound);
  }

  void set_max_nanos(int64_t max_nanos, int64_t first_nanos) {
    const int64_t raised_from = max_nanos_;
    max_nanos_ = std::max(max_nanos, kMinSpinNanos);
    first_nanos_ = std::clamp(first_nanos, kMinSpinNanos, max_nanos_);
    if (max_nanos_ > raised_from) {
      // A longer spin asked for (a peer that says its next message follows soon) is spun
      // whole at once up to `first_nanos`, not grown into after sleeps that each cost a
      // wakeup; beyond it, only as the peer's pauses show they fit (Observe).
      if (budget_nanos_ != 0) budget_nanos_ = first_nanos_;
      fitted_ = 0;
    } else {
      budget_nanos_ = std::min(budget_nanos_, max_nanos_);
    }
  }

  static int64_t MonotonicNanos() {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return int64_t{now.tv_sec} * 1000000000 + now.tv_nsec;
  }

 private:
  static bool single_cpu() {
    static const bool single = sysconf(_SC_NPROCESSORS_ONLN) <= 1;
    return single;
  }

  int64_t budget_nanos_;
  int64_t max_nanos_ = absl::ToInt64Nanoseconds(ShmChannel::kDefaultLongestReadSpin);
  int64_t first_nanos_ = max_nanos_;  // what a spin that finds the message doubles up to
  // How many waits in a row slept and took no longer than max_nanos_ (a wait caught by a
  // spin within first_nanos_ starts the count again).
  int fitted_ = 0;
};

absl::StatusOr<std::unique_ptr<ShmChannel>> ShmChannel::Create(size_t ring_bytes) {
  FFIBOX_ASSIGN_OR_RETURN(int fd, CreateMemfd(ring_bytes, /*shared_bytes=*/0));
  absl::StatusOr<std::unique_ptr<ShmChannel>> channel = Attach(fd, End::kCreator);
  if (!channel.ok()) {
    close(fd);
    return absl::InternalError(absl::StrCat("the channel just made: ", channel.status().message()));
  }
  (*channel)->memfd_ = fd;
  return channel;
}

absl::StatusOr<int> ShmChannel::CreateMemfd(size_t ring_bytes, uint64_t shared_bytes) {
  if (!IsValidRingBytes(ring_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ring of ", ring_bytes, " bytes: the capacity must be a power of two from ",
                     kMinShmRingBytes, " to ", kMaxShmRingBytes));
  }
  if (!IsValidSharedBytes(shared_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a shared area of ", shared_bytes, " bytes: it must be a multiple of ",
                     kShmSharedAlignment, " up to ", kMaxShmSharedBytes));
  }
  if (absl::Status futex = CheckFutexWaitv(); !futex.ok()) return futex;
  // The shared area is sparse: its pages exist once someone writes them.
  const size_t size = FileBytes(ring_bytes, shared_bytes);
  int fd = memfd_create("ffibox-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return absl::ResourceExhaustedError(absl::StrCat("memfd_create: ", strerror(errno)));
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    const int saved = errno;
    close(fd);
    return absl::ResourceExhaustedError(
        absl::StrCat("ftruncate of the channel: ", strerror(saved)));
  }
  SharedHeader header = {};
  header.magic = kMagic;
  header.version = kVersion;
  header.ring_bytes = static_cast<uint32_t>(ring_bytes);
  header.shared_bytes = shared_bytes;
  // The size is fixed before anyone else can map the file: the peer refuses it otherwise.
  if (pwrite(fd, &header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header)) ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL) != 0) {
    const int saved = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("writing and sealing the channel: ", strerror(saved)));
  }
  return fd;
}

absl::StatusOr<std::unique_ptr<ShmChannel>> ShmChannel::Attach(int fd, End end,
                                                               bool may_map_shared) {
  auto refuse = [](absl::string_view why) {
    return absl::FailedPreconditionError(absl::StrCat("refusing the channel's memfd: ", why));
  };
  // Seals first: once the size can no longer change, what fstat says stays true, and no
  // access to the mapping can fault past a shrunk end.
  const int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) return refuse(absl::StrCat("not a memfd (F_GET_SEALS: ", strerror(errno), ")"));
  if ((static_cast<unsigned>(seals) & kRequiredSeals) != kRequiredSeals) {
    return refuse("not sealed against growing, shrinking and further seals");
  }
  if ((static_cast<unsigned>(seals) & kRefusedSeals) != 0) return refuse("sealed against writing");
  struct stat st;
  if (fstat(fd, &st) != 0) return refuse(absl::StrCat("fstat: ", strerror(errno)));
  if (!S_ISREG(st.st_mode) || st.st_size < static_cast<off_t>(kControlBytes) ||
      static_cast<uint64_t>(st.st_size) > FileBytes(kMaxShmRingBytes, kMaxShmSharedBytes)) {
    return refuse(absl::StrCat("a size of ", st.st_size, " bytes"));
  }
  if (absl::Status futex = CheckFutexWaitv(); !futex.ok()) return futex;
  // The header alone first: it says how much of the file the rings take.
  SharedHeader header;
  if (pread(fd, &header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header))) {
    return refuse("its header cannot be read");
  }
  const char* why = nullptr;
  if (header.magic != kMagic) {
    why = "no channel header";
  } else if (header.version != kVersion) {
    why = "another version of the channel";
  } else if (!IsValidRingBytes(header.ring_bytes) || !IsValidSharedBytes(header.shared_bytes) ||
             FileBytes(header.ring_bytes, header.shared_bytes) !=
                 static_cast<uint64_t>(st.st_size)) {
    why = "its capacity does not match its size";
  }
  if (why != nullptr) return refuse(why);
  // Only the control page and the rings; the shared area is mapped when first asked for.
  const size_t size = MappingBytes(header.ring_bytes);
  void* mapping = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapping == MAP_FAILED) return refuse(absl::StrCat("mmap: ", strerror(errno)));
  int shared_fd = -1;
  if (may_map_shared && header.shared_bytes != 0) {
    shared_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (shared_fd < 0) {
      const int saved = errno;
      munmap(mapping, size);
      return absl::ResourceExhaustedError(
          absl::StrCat("keeping the channel's memfd for its shared area: ", strerror(saved)));
    }
  }
  auto channel = std::unique_ptr<ShmChannel>(
      new ShmChannel(mapping, size, header.ring_bytes, -1, end == End::kCreator));
  channel->shared_bytes_ = header.shared_bytes;
  channel->shared_fd_ = shared_fd;
  return channel;
}

absl::StatusOr<absl::Span<char>> ShmChannel::SharedArea() {
  absl::MutexLock lock(&shared_mu_);
  if (shared_ != nullptr) return absl::Span<char>(shared_, shared_bytes_);
  if (shared_bytes_ == 0) {
    return absl::FailedPreconditionError("the channel has no shared area");
  }
  if (!shared_error_.ok()) return shared_error_;
  if (shared_fd_ < 0) {
    return absl::FailedPreconditionError("the channel was attached without its shared area");
  }
  void* area = mmap(nullptr, shared_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, shared_fd_,
                    static_cast<off_t>(SharedAreaOffset(ring_bytes_)));
  const int saved = errno;
  close(shared_fd_);  // a mapping keeps the file; after a failure, no second try
  shared_fd_ = -1;
  if (area == MAP_FAILED) {
    shared_error_ = absl::ResourceExhaustedError(absl::StrCat(
        "mapping the channel's shared area of ", shared_bytes_, " bytes: ", strerror(saved)));
    return shared_error_;
  }
  shared_ = static_cast<char*>(area);
  return absl::Span<char>(shared_, shared_bytes_);
}

ShmChannel::ShmChannel(void* mapping, size_t mapping_bytes, size_t ring_bytes, int memfd,
                       bool creator)
    : mapping_(mapping),
      mapping_bytes_(mapping_bytes),
      ring_bytes_(ring_bytes),
      memfd_(memfd),
      creator_(creator),
      read_spin_(std::make_unique<AdaptiveSpin>()),
      write_spin_(std::make_unique<AdaptiveSpin>()) {
  static_assert(64 + 2 * sizeof(Ring) <= kStatusWordsOffset);
  static_assert(kStatusWordsOffset + kStatusWords * sizeof(uint64_t) <= kControlBytes);
}

ShmChannel::~ShmChannel() {
  Close();
  munmap(mapping_, mapping_bytes_);
  if (shared_ != nullptr) munmap(shared_, shared_bytes_);
  if (shared_fd_ >= 0) close(shared_fd_);
  CloseMemfd();
}

void ShmChannel::CloseMemfd() {
  if (memfd_ >= 0) close(memfd_);
  memfd_ = -1;
}

ShmChannel::Ring& ShmChannel::outbound() const {
  char* rings = static_cast<char*>(mapping_) + 64;
  return *reinterpret_cast<Ring*>(rings + (creator_ ? 0 : sizeof(Ring)));
}

ShmChannel::Ring& ShmChannel::inbound() const {
  char* rings = static_cast<char*>(mapping_) + 64;
  return *reinterpret_cast<Ring*>(rings + (creator_ ? sizeof(Ring) : 0));
}

namespace {

uint64_t* StatusWord(void* mapping, int index) {
  // A caller's bug, never the peer's input: the index is a constant of the caller's code.
  if (index < 0 || index >= ShmChannel::kStatusWords) abort();
  return reinterpret_cast<uint64_t*>(static_cast<char*>(mapping) + kStatusWordsOffset) + index;
}

// The data of the ring this end writes to (`outbound`) or reads from.
char* RingData(void* mapping, size_t ring_bytes, bool creator, bool outbound) {
  const bool first = creator == outbound;  // the creator writes the first ring
  return static_cast<char*>(mapping) + kControlBytes + (first ? 0 : ring_bytes);
}

}  // namespace

absl::Status ShmChannel::Break(std::string message) {
  bool first = false;
  std::string status_message;
  {
    absl::MutexLock lock(&broken_mu_);
    if (!broken_.load()) {
      broken_message_ = std::move(message);
      broken_.store(true);
      first = true;
    }
    status_message = broken_message_;
  }
  // This end's other thread may be asleep waiting on the broken ring: it learns it now, not
  // at its deadline.
  if (first) WakeLocal();
  return absl::DataLossError(status_message);
}

absl::Status ShmChannel::BrokenStatus() const {
  absl::MutexLock lock(&broken_mu_);
  return absl::DataLossError(broken_message_);
}

absl::StatusOr<uint64_t> ShmChannel::CheckedPeerHead() {
  const uint64_t head = Load(&inbound().producer.head);
  // Never behind what it announced before, never more than a ring ahead of what was read.
  if (head - tail_ > ring_bytes_ || head - tail_ < seen_head_ - tail_) {
    return Break(absl::StrCat("the peer broke the shared ring: its write position ", head,
                              " is outside [", seen_head_, ", ", tail_ + ring_bytes_, "]"));
  }
  seen_head_ = head;
  return head;
}

absl::StatusOr<uint64_t> ShmChannel::CheckedPeerTail() {
  const uint64_t tail = Load(&outbound().consumer.tail);
  // Never behind what it announced before, never past what was written.
  if (head_ - tail > head_ - seen_tail_) {
    return Break(absl::StrCat("the peer broke the shared ring: its read position ", tail,
                              " is outside [", seen_tail_, ", ", head_, "]"));
  }
  seen_tail_ = tail;
  return tail;
}

void ShmChannel::WakePeer(uint32_t* shared_word) {
  if (__atomic_exchange_n(shared_word, 0, __ATOMIC_SEQ_CST) != 0) FutexWake(shared_word, true);
}

void ShmChannel::WakeLocal() {
  __atomic_add_fetch(&local_wake_, 1, __ATOMIC_SEQ_CST);
  FutexWake(&local_wake_, false);
}

bool ShmChannel::PeerHungUp() {
  if (hangup_fd_ < 0) return false;
  struct pollfd pfd = {hangup_fd_, POLLIN, 0};
  if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLERR)) != 0) {
    MarkPeerGone();
    return true;
  }
  return false;
}

absl::Status ShmChannel::Wait(uint32_t* shared_word, AdaptiveSpin& spin, bool reading,
                              absl::FunctionRef<bool()> ready, absl::Time deadline,
                              absl::Mutex* unlocked_while_asleep) {
  const int64_t started = AdaptiveSpin::MonotonicNanos();
  const bool spun = spin.Spin([&] { return ready() || (reading && interrupted_.load()); });
  // When the spin gave up and what came arrived soon after, a longer spin would have caught it.
  absl::Cleanup observe = [&spin, spun, started, &ready] {
    if (!spun && ready()) spin.Observe(AdaptiveSpin::MonotonicNanos() - started);
  };
  // However the wait ends, this end is awake: the peer need not wake it (a FUTEX_WAKE is a
  // syscall on its side).
  absl::Cleanup awake = [shared_word] { Store(shared_word, 0); };
  int stale_wakes = 0;
  absl::Duration pause = kFirstPause;
  for (;;) {
    const uint32_t local = __atomic_load_n(&local_wake_, __ATOMIC_SEQ_CST);
    if (reading && interrupted_.exchange(false)) return absl::CancelledError("interrupted");
    if (ready()) return absl::OkStatus();
    // Announce the sleep, then look again: the peer either sees the announcement after it
    // published (and wakes us) or published before this look (which then sees it).
    Store(shared_word, 1);
    if (ready()) return absl::OkStatus();
    const absl::Time now = absl::Now();
    if (now >= deadline) return absl::DeadlineExceededError("the channel's deadline passed");
    absl::Time until = deadline;
    if (hangup_fd_ >= 0) until = std::min(until, now + kHangupCheckInterval);
    absl::StatusOr<SleepResult> slept;
    // Asleep, the caller's lock lets another thread read in its place (SpinReadable); what
    // it consumed meanwhile (tail_ moved), or its mute (which ends a sleep that was about to
    // begin), makes the wake no stale one.
    const uint64_t tail_before = reading ? tail_ : 0;
    const uint32_t mutes_before = reading ? mutes_.load() : 0;
    if (unlocked_while_asleep != nullptr) unlocked_while_asleep->Unlock();
    if (stale_wakes > kStaleWakesBeforePause) {
      // The peer keeps waking us for nothing: sleep on the private word only for a while.
      slept = SleepOn({{&local_wake_, local, false}}, std::min(until, now + pause));
      pause = std::min(2 * pause, kMaxPause);
      stale_wakes = 0;
    } else {
      slept = SleepOn({{shared_word, 1, true}, {&local_wake_, local, false}}, until);
    }
    if (unlocked_while_asleep != nullptr) unlocked_while_asleep->Lock();
    if (!slept.ok()) return slept.status();
    if (*slept == SleepResult::kTimedOut) {
      PeerHungUp();
      continue;
    }
    if (reading && tail_ != tail_before) {
      // Read in this wait's place: the peer's wakes were not for nothing.
      stale_wakes = 0;
      pause = kFirstPause;
    } else if (__atomic_load_n(&local_wake_, __ATOMIC_SEQ_CST) == local && !ready() &&
               (!reading || mutes_.load() == mutes_before)) {
      ++stale_wakes;
    }
  }
}

size_t ShmChannel::WritableNow() {
  absl::StatusOr<uint64_t> tail = CheckedPeerTail();
  if (!tail.ok() || closed_.load()) return 0;
  return ring_bytes_ - static_cast<size_t>(head_ - *tail);
}

absl::Status ShmChannel::Write(absl::string_view bytes, absl::Time deadline) {
  return Write(absl::MakeConstSpan(&bytes, 1), deadline);
}

absl::Status ShmChannel::Write(absl::Span<const absl::string_view> pieces, absl::Time deadline) {
  return WriteUntil(pieces, [deadline] { return deadline; });
}

absl::Status ShmChannel::Write(absl::Span<const absl::string_view> pieces,
                               absl::Duration patience) {
  std::optional<absl::Time> deadline;
  return WriteUntil(pieces, [&deadline, patience] {
    if (!deadline.has_value()) deadline = absl::Now() + patience;
    return *deadline;
  });
}

absl::Status ShmChannel::WriteUntil(absl::Span<const absl::string_view> pieces,
                                    absl::FunctionRef<absl::Time()> deadline) {
  Ring& ring = outbound();
  char* const data = RingData(mapping_, ring_bytes_, creator_, /*outbound=*/true);
  size_t piece = 0;
  size_t done = 0;  // bytes of pieces[piece] already written
  for (;;) {
    while (piece < pieces.size() && done == pieces[piece].size()) {
      ++piece;
      done = 0;
    }
    if (piece == pieces.size()) return absl::OkStatus();
    if (broken_.load()) return BrokenStatus();
    absl::StatusOr<uint64_t> tail = CheckedPeerTail();
    if (!tail.ok()) return tail.status();
    if (closed_.load()) return absl::UnavailableError("the channel is closed");
    if (peer_gone_.load() || Load(&ring.consumer.closed) != 0) {
      return absl::UnavailableError("the channel's peer has gone");
    }
    size_t room = ring_bytes_ - static_cast<size_t>(head_ - *tail);
    if (room == 0) {
      absl::Status waited = Wait(
          &ring.producer.waiting, *write_spin_, /*reading=*/false,
          [&] {
            return Load(&ring.consumer.tail) != seen_tail_ || Load(&ring.consumer.closed) != 0 ||
                   peer_gone_.load() || closed_.load();
          },
          deadline());
      if (!waited.ok()) return waited;
      continue;
    }
    // Everything that fits goes in before the one publication and wake.
    const uint64_t start = head_;
    while (room > 0 && piece < pieces.size()) {
      const size_t size = std::min(room, pieces[piece].size() - done);
      const size_t offset = static_cast<size_t>(head_ & (ring_bytes_ - 1));
      const size_t first = std::min(size, ring_bytes_ - offset);
      memcpy(data + offset, pieces[piece].data() + done, first);
      memcpy(data, pieces[piece].data() + done + first, size - first);
      head_ += size;
      room -= size;
      done += size;
      if (done == pieces[piece].size()) {
        ++piece;
        done = 0;
      }
    }
    if (head_ != start) {
      Store(&ring.producer.head, head_);
      WakePeer(&ring.consumer.waiting);
    }
  }
}

absl::StatusOr<size_t> ShmChannel::ReadAvailable(
    size_t max, absl::FunctionRef<void(const char* untrusted, size_t size)> copy_out) {
  if (broken_.load()) return BrokenStatus();
  Ring& ring = inbound();
  // Whether the peer is done is read before its position: what it wrote before it closed is
  // then all visible.
  const bool peer_done = peer_gone_.load() || Load(&ring.producer.closed) != 0 || closed_.load();
  absl::StatusOr<uint64_t> head = CheckedPeerHead();
  if (!head.ok()) return head.status();
  const size_t size = std::min(max, static_cast<size_t>(*head - tail_));
  if (size == 0) {
    if (peer_done) return absl::UnavailableError("the channel's peer has gone");
    return 0;
  }
  const char* const data = RingData(mapping_, ring_bytes_, creator_, /*outbound=*/false);
  const size_t offset = static_cast<size_t>(tail_ & (ring_bytes_ - 1));
  const size_t first = std::min(size, ring_bytes_ - offset);
  copy_out(data + offset, first);
  if (size > first) copy_out(data, size - first);
  tail_ += size;
  Store(&ring.consumer.tail, tail_);
  WakePeer(&ring.producer.waiting);
  return size;
}

bool ShmChannel::PeerEnded() { return Load(&inbound().producer.closed) != 0 || peer_gone_.load(); }

bool ShmChannel::Readable() {
  Ring& ring = inbound();
  return Load(&ring.producer.head) != tail_ || Load(&ring.producer.closed) != 0 ||
         peer_gone_.load() || closed_.load() || broken_.load();
}

absl::Status ShmChannel::WaitReadable(absl::Time deadline, absl::Mutex* unlocked_while_asleep) {
  return Wait(
      &inbound().consumer.waiting, *read_spin_, /*reading=*/true, [this] { return Readable(); },
      deadline, unlocked_while_asleep);
}

absl::Status ShmChannel::SpinReadable(absl::Time until) {
  const int64_t until_nanos = AdaptiveSpin::MonotonicNanos() +
                              std::clamp<int64_t>(absl::ToInt64Nanoseconds(until - absl::Now()), 0,
                                                  absl::ToInt64Nanoseconds(kLongestSleep));
  for (uint32_t i = 1;; ++i) {
    if (interrupted_.load()) return absl::CancelledError("interrupted");
    if (Readable()) return absl::OkStatus();
    CpuRelax();
    if (i % kPausesPerClockCheck == 0 && AdaptiveSpin::MonotonicNanos() >= until_nanos) {
      return absl::DeadlineExceededError("nothing to read within the spin");
    }
  }
}

void ShmChannel::MuteSleepingReader() {
  mutes_.fetch_add(1);
  Store(&inbound().consumer.waiting, 0);
}

void ShmChannel::UnmuteSleepingReader() {
  // As a sleeper announces itself: the peer either sees the announcement after it published
  // (and wakes the sleeper) or published before this look, which then wakes it.
  Store(&inbound().consumer.waiting, 1);
  if (Readable()) WakeLocal();
}

absl::Status ShmChannel::Read(char* out, size_t size, absl::Time deadline) {
  while (size > 0) {
    absl::StatusOr<size_t> got = ReadAvailable(size, [&out](const char* untrusted, size_t n) {
      memcpy(out, untrusted, n);
      out += n;
    });
    if (!got.ok()) return got.status();
    size -= *got;
    if (size == 0) break;
    if (*got == 0) {
      absl::Status waited = WaitReadable(deadline);
      if (!waited.ok()) return waited;
    }
  }
  return absl::OkStatus();
}

void ShmChannel::Interrupt() {
  interrupted_.store(true);
  WakeLocal();
}

void ShmChannel::MarkPeerGone() {
  if (peer_gone_.exchange(true)) return;
  WakeLocal();
}

void ShmChannel::SetLongestReadSpin(absl::Duration longest, absl::Duration first) {
  read_spin_->set_max_nanos(absl::ToInt64Nanoseconds(longest), absl::ToInt64Nanoseconds(first));
}

uint64_t ShmChannel::LoadStatusWord(int index) const { return Load(StatusWord(mapping_, index)); }

void ShmChannel::StoreStatusWord(int index, uint64_t value) {
  __atomic_store_n(StatusWord(mapping_, index), value, __ATOMIC_RELEASE);
}

void ShmChannel::Close() {
  if (closed_.exchange(true)) return;
  Store(&outbound().producer.closed, 1);
  Store(&inbound().consumer.closed, 1);
  // The peer may sleep on either ring.
  WakePeer(&outbound().consumer.waiting);
  WakePeer(&inbound().producer.waiting);
  WakeLocal();
}

}  // namespace ffibox
