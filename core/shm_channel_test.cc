#include "core/shm_channel.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

constexpr size_t kRing = kMinShmRingBytes;
const absl::Time kForever = absl::InfiniteFuture();

absl::Time In(absl::Duration duration) { return absl::Now() + duration; }

// A pattern that makes a misplaced or lost byte visible.
std::string Pattern(size_t size) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 131 + i / 251) & 0xff);
  return bytes;
}

// The peer: a forked process that attaches the creator's memfd (inherited) and runs `body`;
// its exit status is what body returns (100 when it cannot attach). Only the channel's own
// calls run in the child.
class Peer {
 public:
  Peer(const ShmChannel& creator, std::function<int(ShmChannel&)> body)
      : Peer(creator.memfd(), std::move(body)) {}
  // The same with the channel's memfd.
  Peer(int memfd, std::function<int(ShmChannel&)> body) {
    pid_ = fork();
    if (pid_ == 0) {
      int code = 100;
      {
        absl::StatusOr<std::unique_ptr<ShmChannel>> channel = ShmChannel::Attach(memfd);
        if (channel.ok()) code = body(**channel);
      }  // the peer's end closes
      _exit(code);
    }
  }
  ~Peer() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      Wait();
    }
  }

  pid_t pid() const { return pid_; }
  // The test reaped the peer itself.
  void Forget() { reaped_ = true; }

  // The peer's exit status, or 128 + its signal.
  int Wait() {
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};

std::unique_ptr<ShmChannel> MakeChannel(size_t ring_bytes = kRing) {
  absl::StatusOr<std::unique_ptr<ShmChannel>> channel = ShmChannel::Create(ring_bytes);
  EXPECT_OK(channel);
  return channel.ok() ? *std::move(channel) : nullptr;
}

// Neither reads nor writes, until it is killed.
int Silent(ShmChannel&) {
  pause();
  return 0;
}

// What supervises the peer learning of its death: after 100 ms, kills it, reaps it
// (waitpid) and tells the channel.
std::thread KillPeerAndMarkItGoneSoon(Peer& peer, ShmChannel& channel) {
  return std::thread([&peer, &channel] {
    absl::SleepFor(absl::Milliseconds(100));
    kill(peer.pid(), SIGKILL);
    peer.Wait();
    channel.MarkPeerGone();
  });
}

// Echoes what it reads until the creator closes the channel.
int Echo(ShmChannel& channel) {
  char buffer[1000];
  for (;;) {
    size_t filled = 0;
    absl::StatusOr<size_t> got =
        channel.ReadAvailable(sizeof(buffer), [&buffer, &filled](const char* bytes, size_t n) {
          memcpy(buffer + filled, bytes, n);
          filled += n;
        });
    if (!got.ok()) return absl::IsUnavailable(got.status()) ? 0 : 1;
    if (*got == 0) {
      if (!channel.WaitReadable(kForever).ok()) return 2;
      continue;
    }
    if (!channel.Write(absl::string_view(buffer, *got), kForever).ok()) return 3;
  }
}

// Raw access to the whole shared file, as a hostile peer has it.
struct RawMapping {
  explicit RawMapping(int memfd) {
    struct stat st;
    fstat(memfd, &st);
    size = static_cast<size_t>(st.st_size);
    bytes = static_cast<unsigned char*>(
        mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0));
  }
  ~RawMapping() { munmap(bytes, size); }
  unsigned char* bytes;
  size_t size;
};

// The first page holds the header (its first 16 bytes) and the rings' positions (within its
// first kWordsBytes).
constexpr size_t kHeaderBytes = 16;
constexpr size_t kWordsBytes = 512;
constexpr size_t kControlBytes = 4096;

TEST(ShmChannelTest, SmallMessagesRoundTripThroughAnotherProcess) {
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  Peer peer(*channel, Echo);
  for (int i = 0; i < 1000; ++i) {
    const std::string message = absl::StrCat("message ", i, " to the echo");
    ASSERT_OK(channel->Write(message, In(absl::Seconds(10))));
    std::string echoed(message.size(), '\0');
    ASSERT_OK(channel->Read(echoed.data(), echoed.size(), In(absl::Seconds(10))));
    ASSERT_EQ(echoed, message);
  }
  channel->Close();
  EXPECT_EQ(peer.Wait(), 0);
}

TEST(ShmChannelTest, MessagesMuchLargerThanTheRingStreamThroughIt) {
  std::unique_ptr<ShmChannel> channel = MakeChannel(kRing);
  Peer peer(*channel, Echo);
  // 1 MiB and an odd tail through 4 KiB rings, both ways at once: the echo writes back
  // while this process is still writing.
  const std::string message = Pattern((size_t{1} << 20) + 4093);
  std::thread writer([&] { EXPECT_OK(channel->Write(message, In(absl::Seconds(30)))); });
  std::string echoed(message.size(), '\0');
  absl::Status read = channel->Read(echoed.data(), echoed.size(), In(absl::Seconds(30)));
  writer.join();
  ASSERT_OK(read);
  EXPECT_TRUE(echoed == message);
  channel->Close();
  EXPECT_EQ(peer.Wait(), 0);
}

TEST(ShmChannelTest, GatheredPiecesArriveAsOneStream) {
  std::unique_ptr<ShmChannel> channel = MakeChannel(kRing);
  Peer peer(*channel, Echo);
  const std::string big = Pattern(3 * kRing + 5);
  const absl::string_view pieces[] = {"head", "", big, "tail"};
  std::thread writer([&] { EXPECT_OK(channel->Write(pieces, In(absl::Seconds(30)))); });
  std::string echoed(big.size() + 8, '\0');
  ASSERT_OK(channel->Read(echoed.data(), echoed.size(), In(absl::Seconds(30))));
  writer.join();
  EXPECT_TRUE(echoed == absl::StrCat("head", big, "tail"));
}

TEST(ShmChannelTest, PeerCloseIsEndOfStreamAfterWhatItSent) {
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  Peer peer(*channel, [](ShmChannel& peer_end) {
    return peer_end.Write("goodbye", kForever).ok() ? 0 : 1;  // destruction closes
  });
  char said[7];
  ASSERT_OK(channel->Read(said, sizeof(said), In(absl::Seconds(10))));
  EXPECT_EQ(absl::string_view(said, sizeof(said)), "goodbye");
  char more;
  EXPECT_EQ(channel->Read(&more, 1, In(absl::Seconds(10))).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(peer.Wait(), 0);
  // And writing to a closed peer fails rather than waiting.
  EXPECT_EQ(channel->Write(Pattern(2 * kRing), In(absl::Seconds(10))).code(),
            absl::StatusCode::kUnavailable);
}

// A third process makes the channel and hands both ends on, as the broker does between a
// client and a worker: the client's end (attached as the creator's) and the worker's talk
// to each other; the broker's own attachment of the worker's end closes it for the worker
// (its death), and the client reads what came before, then end of stream.
TEST(ShmChannelTest, AThirdProcessHandsBothEndsOnAndClosesOneForItsOwner) {
  ASSERT_OK_AND_ASSIGN(const int memfd, ShmChannel::CreateMemfd(kRing));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShmChannel> client,
                       ShmChannel::Attach(memfd, ShmChannel::End::kCreator));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShmChannel> held_worker_end,
                       ShmChannel::Attach(memfd, ShmChannel::End::kPeer));
  Peer worker(memfd, [](ShmChannel& worker_end) {
    char asked[4];
    if (!worker_end.Read(asked, sizeof(asked), kForever).ok()) return 1;
    worker_end.StoreStatusWord(3, 0x1234);
    if (!worker_end.Write(absl::StrCat(absl::string_view(asked, 4), "!"), kForever).ok()) return 2;
    pause();  // until killed, without closing its end: a worker that dies
    return 0;
  });
  close(memfd);  // the maker keeps only its attachment of the worker's end
  ASSERT_OK(client->Write("ping", In(absl::Seconds(10))));
  char answer[5];
  ASSERT_OK(client->Read(answer, sizeof(answer), In(absl::Seconds(10))));
  EXPECT_EQ(absl::string_view(answer, sizeof(answer)), "ping!");
  EXPECT_EQ(held_worker_end->LoadStatusWord(3), 0x1234u);
  EXPECT_EQ(client->LoadStatusWord(3), 0x1234u);

  kill(worker.pid(), SIGKILL);
  worker.Wait();
  // The client would wait forever for a dead worker; the holder's close ends its read.
  std::thread closer([&] {
    absl::SleepFor(absl::Milliseconds(50));
    held_worker_end->Close();
  });
  char more;
  EXPECT_EQ(client->Read(&more, 1, In(absl::Seconds(10))).code(), absl::StatusCode::kUnavailable);
  closer.join();
  EXPECT_EQ(client->Write("more", In(absl::Seconds(10))).code(), absl::StatusCode::kUnavailable);
}

// Close races the peer going to sleep, many times: the peer always wakes and ends.
TEST(ShmChannelTest, CloseAlwaysWakesAPeerWaitingToRead) {
  for (int round = 0; round < 300; ++round) {
    std::unique_ptr<ShmChannel> channel = MakeChannel();
    Peer peer(*channel, [](ShmChannel& peer_end) {
      char byte;
      for (;;) {
        absl::Status read = peer_end.Read(&byte, 1, kForever);
        if (!read.ok()) return absl::IsUnavailable(read) ? 0 : 1;
      }
    });
    // A byte makes the peer wake, read and go back to sleep while Close comes.
    ASSERT_OK(channel->Write("x", In(absl::Seconds(10))));
    absl::SleepFor(absl::Microseconds(round % 50));
    channel->Close();
    const absl::Time give_up = absl::Now() + absl::Seconds(5);
    int status = 0;
    pid_t ended = 0;
    while ((ended = waitpid(peer.pid(), &status, WNOHANG)) == 0 && absl::Now() < give_up) {
      absl::SleepFor(absl::Microseconds(200));
    }
    ASSERT_EQ(ended, peer.pid()) << "round " << round << ": the peer still waits";
    peer.Forget();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
}

TEST(ShmChannelTest, ReadFromASilentPeerEndsAtItsDeadline) {
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  Peer peer(*channel, Silent);
  const absl::Time start = absl::Now();
  char byte;
  EXPECT_EQ(channel->Read(&byte, 1, start + absl::Milliseconds(150)).code(),
            absl::StatusCode::kDeadlineExceeded);
  const absl::Duration waited = absl::Now() - start;
  EXPECT_GE(waited, absl::Milliseconds(150));
  EXPECT_LT(waited, absl::Seconds(2));
  // A deadline already past returns at once.
  EXPECT_EQ(channel->Read(&byte, 1, absl::Now() - absl::Seconds(1)).code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(ShmChannelTest, WriteToAPeerThatDoesNotReadEndsAtItsDeadline) {
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  Peer peer(*channel, Silent);
  // The first ring's worth fits; the rest waits for room that never comes.
  ASSERT_OK(channel->Write(Pattern(kRing), In(absl::Seconds(10))));
  const absl::Time start = absl::Now();
  EXPECT_EQ(channel->Write("x", start + absl::Milliseconds(150)).code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  // With a patience instead of a deadline: counted from when it found no room.
  const absl::string_view one[] = {"x"};
  const absl::Time again = absl::Now();
  EXPECT_EQ(channel->Write(one, absl::Milliseconds(150)).code(),
            absl::StatusCode::kDeadlineExceeded);
  const absl::Duration waited = absl::Now() - again;
  EXPECT_GE(waited, absl::Milliseconds(150));
  EXPECT_LT(waited, absl::Seconds(2));
}

TEST(ShmChannelTest, InterruptWakesABlockedReaderPromptly) {
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  Peer peer(*channel, Silent);
  std::thread interrupter([&] {
    absl::SleepFor(absl::Milliseconds(100));
    channel->Interrupt();
  });
  const absl::Time start = absl::Now();
  char byte;
  EXPECT_EQ(channel->Read(&byte, 1, kForever).code(), absl::StatusCode::kCancelled);
  interrupter.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  // Consumed: the next read waits again.
  EXPECT_EQ(channel->Read(&byte, 1, In(absl::Milliseconds(20))).code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(ShmChannelTest, APeerThatDiesWhileTheReaderWaitsEndsTheReadOnceItIsMarkedGone) {
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  Peer peer(*channel, [](ShmChannel& peer_end) {
    (void)peer_end.Write("last words", kForever);
    pause();
    return 0;
  });
  char said[10];
  ASSERT_OK(channel->Read(said, sizeof(said), In(absl::Seconds(10))));
  std::thread supervisor = KillPeerAndMarkItGoneSoon(peer, *channel);
  const absl::Time start = absl::Now();
  char byte;
  EXPECT_EQ(channel->Read(&byte, 1, kForever).code(), absl::StatusCode::kUnavailable);
  supervisor.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST(ShmChannelTest, AWriterBlockedOnAFullRingEndsWhenThePeerIsMarkedGone) {
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  Peer peer(*channel, Silent);
  std::thread supervisor = KillPeerAndMarkItGoneSoon(peer, *channel);
  const absl::Time start = absl::Now();
  EXPECT_EQ(channel->Write(Pattern(3 * kRing), kForever).code(), absl::StatusCode::kUnavailable);
  supervisor.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST(ShmChannelTest, AWatchedSocketsHangupMarksThePeerGone) {
  int sockets[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets), 0);
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  Peer peer(*channel, [&sockets](ShmChannel& peer_end) {
    (void)peer_end.Write("bytes before the end", kForever);
    absl::SleepFor(absl::Milliseconds(100));
    _exit(0);  // no Close: only the socket's hangup tells
    return 0;
  });
  close(sockets[1]);  // the peer holds the only other end
  channel->WatchPeerHangup(sockets[0]);
  const absl::Time start = absl::Now();
  std::string said(20, '\0');
  ASSERT_OK(channel->Read(said.data(), said.size(), kForever));
  EXPECT_EQ(said, "bytes before the end");
  char byte;
  EXPECT_EQ(channel->Read(&byte, 1, kForever).code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, kHangupCheckInterval + absl::Seconds(2));
  close(sockets[0]);
}

// A peer that overwrites the rings' positions with impossible values: the channel refuses
// them (DATA_LOSS) in both directions, for good, and touches nothing out of bounds.
TEST(ShmChannelTest, ImpossiblePositionsFromAHostilePeerBreakTheChannel) {
  for (unsigned char garbage : {0xff, 0x7f, 0x80, 0x01, 0x55, 0x02}) {
    SCOPED_TRACE(static_cast<int>(garbage));
    std::unique_ptr<ShmChannel> channel = MakeChannel();
    const int memfd = channel->memfd();
    Peer peer(*channel, [memfd, garbage](ShmChannel&) {
      RawMapping raw(memfd);
      memset(raw.bytes + kHeaderBytes, garbage, kControlBytes - kHeaderBytes);
      return 0;
    });
    ASSERT_EQ(peer.Wait(), 0);
    // Whichever direction looks first finds the breach; the other then reports it too.
    char byte;
    const bool write_first = garbage & 1;
    if (write_first) {
      EXPECT_EQ(channel->Write("x", In(absl::Seconds(5))).code(), absl::StatusCode::kDataLoss);
    }
    absl::Status read = channel->Read(&byte, 1, In(absl::Seconds(5)));
    EXPECT_EQ(read.code(), absl::StatusCode::kDataLoss) << read;
    EXPECT_EQ(channel->Write("x", In(absl::Seconds(5))).code(), absl::StatusCode::kDataLoss);
  }
}

// The broker's stream thread finds the breach when it writes a request while its reader
// thread sleeps waiting for the reply: the reader wakes with the breach at once, instead of
// sleeping until the request's deadline.
TEST(ShmChannelTest, ABreachFoundByTheWriterWakesTheWaitingReader) {
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  const int memfd = channel->memfd();
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  Peer peer(*channel, [memfd, &go](ShmChannel&) {
    char byte;
    if (read(go[0], &byte, 1) != 1) return 1;
    RawMapping raw(memfd);
    memset(raw.bytes + kHeaderBytes, 0xff, kControlBytes - kHeaderBytes);
    // Alive, as a hostile worker stays: its exit would wake the reader by itself.
    return read(go[0], &byte, 1) == 1 ? 0 : 2;
  });
  absl::Status read_status;
  absl::Time read_ended;
  std::thread reader([&channel, &read_status, &read_ended] {
    char byte;
    read_status = channel->Read(&byte, 1, In(absl::Seconds(20)));
    read_ended = absl::Now();
  });
  absl::SleepFor(absl::Milliseconds(200));  // the reader is past its spin, asleep
  ASSERT_EQ(write(go[1], "g", 1), 1);
  absl::SleepFor(absl::Milliseconds(100));  // the peer has scribbled
  const absl::Time broken = absl::Now();
  EXPECT_EQ(channel->Write("x", In(absl::Seconds(5))).code(), absl::StatusCode::kDataLoss);
  reader.join();
  EXPECT_EQ(read_status.code(), absl::StatusCode::kDataLoss) << read_status;
  EXPECT_LT(read_ended - broken, absl::Seconds(2));
  ASSERT_EQ(write(go[1], "g", 1), 1);
  ASSERT_EQ(peer.Wait(), 0);
  close(go[0]);
  close(go[1]);
}

TEST(ShmChannelTest, APeerPositionThatGoesBackBreaksTheChannel) {
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  const int memfd = channel->memfd();
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  Peer peer(*channel, [memfd, &go](ShmChannel& peer_end) {
    RawMapping raw(memfd);
    std::string before(raw.bytes, raw.bytes + kControlBytes);
    if (!peer_end.Write("0123456789", kForever).ok()) return 1;
    char byte;
    if (read(go[0], &byte, 1) != 1) return 2;
    // Rewinds every position to before the write (the creator's own ones included, which
    // it must never read back).
    memcpy(raw.bytes, before.data(), kControlBytes);
    return 0;
  });
  char said[10];
  ASSERT_OK(channel->Read(said, sizeof(said), In(absl::Seconds(10))));
  ASSERT_EQ(write(go[1], "g", 1), 1);
  ASSERT_EQ(peer.Wait(), 0);
  char byte;
  EXPECT_EQ(channel->Read(&byte, 1, In(absl::Seconds(5))).code(), absl::StatusCode::kDataLoss);
  close(go[0]);
  close(go[1]);
}

// A peer that scribbles random bytes over the whole file while this end reads and writes:
// every call returns a status (most often DATA_LOSS), none crashes or reads out of bounds
// (this test also runs under --config=asan).
TEST(ShmChannelTest, APeerScribblingOverTheWholeFileGetsErrorsNotACrash) {
  for (int round = 0; round < 10; ++round) {
    std::unique_ptr<ShmChannel> channel = MakeChannel();
    const int memfd = channel->memfd();
    Peer peer(*channel, [memfd, round](ShmChannel&) {
      RawMapping raw(memfd);
      uint64_t state = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(round + 1);
      const absl::Time end = absl::Now() + absl::Milliseconds(200);
      while (absl::Now() < end) {
        for (int i = 0; i < 4096; ++i) {
          state ^= state << 13;
          state ^= state >> 7;
          state ^= state << 17;
          // Mostly the positions, sometimes anywhere.
          const size_t where = (state >> 40) % (i % 8 == 0 ? raw.size : kControlBytes);
          raw.bytes[where] = static_cast<unsigned char>(state);
        }
      }
      return 0;
    });
    std::thread writer([&] {
      for (int i = 0; i < 200; ++i) {
        absl::Status written = channel->Write(Pattern(1000), In(absl::Milliseconds(5)));
        if (absl::IsDataLoss(written)) break;
      }
    });
    std::string buffer(3 * kRing, '\0');
    for (int i = 0; i < 200; ++i) {
      absl::Status read =
          channel->Read(buffer.data(), 1 + (i * 97) % buffer.size(), In(absl::Milliseconds(5)));
      EXPECT_TRUE(read.ok() || absl::IsDataLoss(read) || absl::IsDeadlineExceeded(read) ||
                  absl::IsUnavailable(read))
          << read;
      if (absl::IsDataLoss(read)) break;
    }
    writer.join();
    EXPECT_EQ(peer.Wait(), 0);
  }
}

// A peer that wakes this end over and over without sending anything, keeping the futex words
// at values that make a sleep return at once: the waiting side sleeps anyway (it pauses after
// such wakes) instead of spinning on the CPU, and still returns at its deadline.
TEST(ShmChannelTest, AWakeStormFromThePeerDoesNotMakeTheReaderSpin) {
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  const int memfd = channel->memfd();
  Peer peer(*channel, [memfd](ShmChannel&) {
    RawMapping raw(memfd);
    uint32_t* words = reinterpret_cast<uint32_t*>(raw.bytes);
    for (uint64_t sweep = 0;; ++sweep) {
      // A word that turns 1 is a sleeper's announcement: woken at once, and every other time
      // turned back to 0, so the next sleep returns at once.
      for (size_t i = kHeaderBytes / 4; i < kWordsBytes / 4; ++i) {
        if (__atomic_load_n(&words[i], __ATOMIC_RELAXED) != 1) continue;
        if (sweep % 2 == 0) __atomic_store_n(&words[i], 0, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, &words[i], FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
      }
    }
    return 0;
  });
  absl::SleepFor(absl::Milliseconds(50));  // the storm is on
  struct rusage before, after;
  getrusage(RUSAGE_THREAD, &before);
  const absl::Time start = absl::Now();
  char byte;
  EXPECT_EQ(channel->Read(&byte, 1, start + absl::Milliseconds(500)).code(),
            absl::StatusCode::kDeadlineExceeded);
  const absl::Duration waited = absl::Now() - start;
  getrusage(RUSAGE_THREAD, &after);
  const absl::Duration cpu =
      absl::DurationFromTimeval(after.ru_utime) - absl::DurationFromTimeval(before.ru_utime) +
      absl::DurationFromTimeval(after.ru_stime) - absl::DurationFromTimeval(before.ru_stime);
  EXPECT_LT(waited, absl::Seconds(2));
  // Without the pauses this thread spends 90 to 150 ms of CPU here on this 2-CPU machine;
  // with them, about 2 ms.
  EXPECT_LT(cpu, absl::Milliseconds(25)) << "in " << waited;
}

// A reader told its peer's next message follows soon (SetLongestReadSpin raised) spins that
// long for it at once, instead of sleeping first and growing its spin after each wakeup:
// the peer, which writes 5 ms into a 200 ms spin, never sees the reader announce a sleep.
// (On a single CPU a reader never spins: it sleeps at once.)
TEST(ShmChannelTest, ARaisedLongestSpinIsSpunWholeBeforeTheReaderSleeps) {
  const bool single_cpu = sysconf(_SC_NPROCESSORS_ONLN) <= 1;
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  const int memfd = channel->memfd();
  Peer peer(*channel, [memfd](ShmChannel& end) {
    RawMapping raw(memfd);
    const uint32_t* words = reinterpret_cast<const uint32_t*>(raw.bytes);
    bool slept = false;
    for (const absl::Time until = In(absl::Milliseconds(5)); absl::Now() < until;) {
      for (size_t i = kHeaderBytes / 4; i < kWordsBytes / 4; ++i) {
        if (__atomic_load_n(&words[i], __ATOMIC_SEQ_CST) == 1) slept = true;
      }
    }
    if (!end.Write("x", In(absl::Seconds(5))).ok()) return 2;
    return slept ? 1 : 0;
  });
  channel->SetLongestReadSpin(absl::Milliseconds(200));
  char byte = 0;
  ASSERT_OK(channel->Read(&byte, 1, In(absl::Seconds(5))));
  EXPECT_EQ(byte, 'x');
  EXPECT_EQ(peer.Wait(), single_cpu ? 1 : 0)
      << "1: the reader announced a sleep before the message came";
}

// The voluntary context switches and the CPU time of the calling thread so far.
struct ThreadUsage {
  long switches;
  absl::Duration cpu;
};
ThreadUsage UsageOfThisThread() {
  struct rusage usage;
  getrusage(RUSAGE_THREAD, &usage);
  return {usage.ru_nvcsw,
          absl::DurationFromTimeval(usage.ru_utime) + absl::DurationFromTimeval(usage.ru_stime)};
}

// Reads `count` one-byte messages that a peer writes `pause` apart, the spin set before each
// read as a reader of requests does; for each read, whether the reader slept for it (a
// voluntary context switch), and the reader's CPU time over all of them.
struct PacedReads {
  std::vector<bool> slept;
  absl::Duration cpu;
};
PacedReads ReadPacedMessages(int count, absl::Duration pause, absl::Duration longest,
                             absl::Duration first) {
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  Peer peer(*channel, [count, pause](ShmChannel& end) {
    for (int i = 0; i < count; ++i) {
      absl::SleepFor(pause);
      if (!end.Write("x", In(absl::Seconds(5))).ok()) return 2;
    }
    return 0;
  });
  PacedReads reads;
  const absl::Duration cpu_before = UsageOfThisThread().cpu;
  for (int i = 0; i < count; ++i) {
    channel->SetLongestReadSpin(longest, first);
    const long switches = UsageOfThisThread().switches;
    char byte = 0;
    EXPECT_OK(channel->Read(&byte, 1, In(absl::Seconds(5))));
    reads.slept.push_back(UsageOfThisThread().switches != switches);
  }
  reads.cpu = UsageOfThisThread().cpu - cpu_before;
  EXPECT_EQ(peer.Wait(), 0);
  return reads;
}

// A raised spin whose first length is shorter than its longest spins the first length at
// once, and grows past it only once three waits in a row show the peer's pauses fit under the
// longest: then a peer pausing 10 ms (past the 1 ms first spin) is caught without a sleep.
TEST(ShmChannelTest, ARaisedSpinGrowsPastItsFirstLengthToPausesThatFit) {
  const bool single_cpu = sysconf(_SC_NPROCESSORS_ONLN) <= 1;
  PacedReads reads =
      ReadPacedMessages(12, absl::Milliseconds(10), absl::Milliseconds(200), absl::Milliseconds(1));
  // The first three waits sleep: a 1 ms spin, then shorter ones, the pauses that fit not
  // taken for the peer's pace yet; after the third, the spin is twice the pause.
  EXPECT_TRUE(reads.slept[0]);
  EXPECT_TRUE(reads.slept[1]);
  EXPECT_TRUE(reads.slept[2]);
  int caught = 0;
  for (int i = 3; i < 12; ++i) caught += reads.slept[i] ? 0 : 1;
  if (single_cpu) {
    EXPECT_EQ(caught, 0) << "a reader on one CPU never spins";
  } else {
    // A peer held up past the grown spin (20 ms) by a busy machine makes a read sleep.
    EXPECT_GE(caught, 6) << "of 9 reads after the peer's pace was seen";
  }
}

// A peer that pauses longer than the longest spin costs no more than the first spin per
// wait (halving after each miss): six waits of 30 ms against a longest spin of 15 ms. Spun
// whole at its longest, as a spin raised with no first length is, the same waits would take
// 15 + 7.5 + 3.75 + ... ms of CPU.
TEST(ShmChannelTest, ARaisedSpinStaysAtItsFirstLengthForPausesLongerThanItsLongest) {
  PacedReads reads =
      ReadPacedMessages(6, absl::Milliseconds(30), absl::Milliseconds(15), absl::Milliseconds(1));
  for (size_t i = 0; i < reads.slept.size(); ++i) EXPECT_TRUE(reads.slept[i]) << "read " << i;
  EXPECT_LT(reads.cpu, absl::Milliseconds(10));
}

TEST(ShmChannelTest, TheCreatorsMemfdCannotBeResizedOrResealed) {
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  const int seals = fcntl(channel->memfd(), F_GET_SEALS);
  EXPECT_EQ(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  EXPECT_NE(ftruncate(channel->memfd(), 1), 0);
  EXPECT_NE(ftruncate(channel->memfd(), 1 << 30), 0);
  EXPECT_NE(fcntl(channel->memfd(), F_ADD_SEALS, F_SEAL_WRITE), 0);
}

// A copy of a real channel's file in a new memfd of `size` bytes (a valid header), with
// `seals` added.
int CopyOfChannel(const ShmChannel& channel, size_t size, unsigned seals) {
  int fd = memfd_create("copy", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
  char page[kControlBytes];
  EXPECT_EQ(pread(channel.memfd(), page, sizeof(page), 0), static_cast<ssize_t>(sizeof(page)));
  EXPECT_EQ(pwrite(fd, page, sizeof(page), 0), static_cast<ssize_t>(sizeof(page)));
  if (seals != 0) {
    EXPECT_EQ(fcntl(fd, F_ADD_SEALS, seals), 0);
  }
  return fd;
}

TEST(ShmChannelTest, AttachRefusesAFileItCouldBeTrickedWith) {
  std::unique_ptr<ShmChannel> channel = MakeChannel();
  const size_t size = kControlBytes + 2 * kRing;
  const unsigned sealed = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
  struct Case {
    const char* what;
    int fd;
  };
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  char file_template[] = "/tmp/shm_channel_test.XXXXXX";
  int regular = mkstemp(file_template);
  ASSERT_GE(regular, 0);
  unlink(file_template);
  ASSERT_EQ(ftruncate(regular, static_cast<off_t>(size)), 0);
  int zeros = memfd_create("zeros", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_EQ(ftruncate(zeros, static_cast<off_t>(size)), 0);
  ASSERT_EQ(fcntl(zeros, F_ADD_SEALS, sealed), 0);
  const Case cases[] = {
      {"a pipe", pipe_fds[0]},
      {"a regular file", regular},
      {"an unsealed copy (it could shrink under the mapping)", CopyOfChannel(*channel, size, 0)},
      {"a copy that may still grow", CopyOfChannel(*channel, size, F_SEAL_SHRINK | F_SEAL_SEAL)},
      {"a copy that may still shrink", CopyOfChannel(*channel, size, F_SEAL_GROW | F_SEAL_SEAL)},
      {"a copy that may be sealed further",
       CopyOfChannel(*channel, size, F_SEAL_SHRINK | F_SEAL_GROW)},
      {"a copy sealed against writing", CopyOfChannel(*channel, size, sealed | F_SEAL_WRITE)},
      {"a copy whose size is not its header's", CopyOfChannel(*channel, size + 4096, sealed)},
      {"a sealed memfd without a header", zeros},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::unique_ptr<ShmChannel>> attached = ShmChannel::Attach(c.fd);
    EXPECT_EQ(attached.status().code(), absl::StatusCode::kFailedPrecondition) << c.what;
    close(c.fd);
  }
  close(pipe_fds[1]);
  // The same copy, sealed as the creator seals, is accepted.
  int good = CopyOfChannel(*channel, size, sealed);
  EXPECT_OK(ShmChannel::Attach(good));
  close(good);
}

TEST(ShmChannelTest, CreateRefusesCapacitiesThatAreNotAPowerOfTwoInRange) {
  for (size_t ring_bytes : {size_t{0}, kMinShmRingBytes / 2, kMinShmRingBytes + 1, size_t{3} << 20,
                            kMaxShmRingBytes * 2}) {
    EXPECT_EQ(ShmChannel::Create(ring_bytes).status().code(), absl::StatusCode::kInvalidArgument)
        << ring_bytes;
  }
  EXPECT_OK(ShmChannel::Create(kMinShmRingBytes));
}

// The shared area: after the rings in the same file, mapped by each end that may map it, the
// bytes one end writes read by the other; the file's size must match the header's area.
TEST(ShmChannelTest, TheSharedAreaIsTheSameBytesAtBothEnds) {
  const uint64_t area = uint64_t{1} << 20;
  ASSERT_OK_AND_ASSIGN(int fd, ShmChannel::CreateMemfd(kRing, area));
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  // The area starts at the first multiple of 64 KiB after the rings.
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kShmSharedAlignment + area);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShmChannel> creator,
                       ShmChannel::Attach(fd, ShmChannel::End::kCreator, true));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShmChannel> peer,
                       ShmChannel::Attach(fd, ShmChannel::End::kPeer, true));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShmChannel> without, ShmChannel::Attach(fd));
  close(fd);  // the channels keep what they need
  EXPECT_EQ(creator->shared_bytes(), area);
  EXPECT_EQ(without->shared_bytes(), area);
  EXPECT_EQ(without->SharedArea().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(absl::Span<char> mine, creator->SharedArea());
  ASSERT_OK_AND_ASSIGN(absl::Span<char> theirs, peer->SharedArea());
  ASSERT_EQ(mine.size(), area);
  ASSERT_EQ(theirs.size(), area);
  EXPECT_NE(mine.data(), theirs.data());
  memset(mine.data(), 'm', area);
  theirs[area - 1] = 't';
  EXPECT_EQ(theirs[0], 'm');
  EXPECT_EQ(mine[area - 1], 't');
  // Asking again maps nothing new.
  ASSERT_OK_AND_ASSIGN(absl::Span<char> again, creator->SharedArea());
  EXPECT_EQ(again.data(), mine.data());
  // The rings still work beside it.
  ASSERT_OK(creator->Write("ping", absl::Now() + absl::Seconds(5)));
  char got[4];
  ASSERT_OK(peer->Read(got, sizeof(got), absl::Now() + absl::Seconds(5)));
  EXPECT_EQ(std::string(got, 4), "ping");
  // A channel without an area has none to give.
  std::unique_ptr<ShmChannel> plain = MakeChannel();
  EXPECT_EQ(plain->shared_bytes(), 0u);
  EXPECT_EQ(plain->SharedArea().status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ShmChannelTest, CreateRefusesASharedAreaOfAnOddSizeOrTooLarge) {
  for (uint64_t bytes : {uint64_t{1}, uint64_t{4096}, kShmSharedAlignment - 1,
                         kShmSharedAlignment + 4096, kMaxShmSharedBytes + kShmSharedAlignment}) {
    EXPECT_EQ(ShmChannel::CreateMemfd(kRing, bytes).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bytes;
  }
  ASSERT_OK_AND_ASSIGN(int fd, ShmChannel::CreateMemfd(kRing, kShmSharedAlignment));
  close(fd);
}

// A file whose header claims an area it does not have (or the other way round) is refused.
TEST(ShmChannelTest, AttachRefusesASharedAreaThatDoesNotMatchTheFile) {
  const uint64_t area = 2 * kShmSharedAlignment;
  ASSERT_OK_AND_ASSIGN(int fd, ShmChannel::CreateMemfd(kRing, area));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShmChannel> real, ShmChannel::Attach(fd));
  const unsigned sealed = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
  // Without the area, the area right after the rings (unaligned), a page short, one more.
  for (size_t size : {kControlBytes + 2 * kRing, kControlBytes + 2 * kRing + area,
                      kShmSharedAlignment + area - 4096, kShmSharedAlignment + area + 4096}) {
    int copy = memfd_create("copy", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    ASSERT_EQ(ftruncate(copy, static_cast<off_t>(size)), 0);
    char page[kControlBytes];
    ASSERT_EQ(pread(fd, page, sizeof(page), 0), static_cast<ssize_t>(sizeof(page)));
    ASSERT_EQ(pwrite(copy, page, sizeof(page), 0), static_cast<ssize_t>(sizeof(page)));
    ASSERT_EQ(fcntl(copy, F_ADD_SEALS, sealed), 0);
    EXPECT_EQ(ShmChannel::Attach(copy).status().code(), absl::StatusCode::kFailedPrecondition)
        << size;
    close(copy);
  }
  close(fd);
}

// While the reader sleeps in WaitReadable (which releases its lock for the sleep), another
// thread takes the lock, mutes the sleeper and reads in its place: the peer's bytes do not
// wake the sleeper. Unmuted, the sleeper wakes at once for bytes nobody read meanwhile, and
// for later bytes as before; an Interrupt seen in its place is left for it.
TEST(ShmChannelTest, AnotherThreadReadsInPlaceOfASleepingReaderWithoutWakingIt) {
  ASSERT_OK_AND_ASSIGN(const int memfd, ShmChannel::CreateMemfd(kRing));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShmChannel> reader_end,
                       ShmChannel::Attach(memfd, ShmChannel::End::kCreator));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShmChannel> writer_end,
                       ShmChannel::Attach(memfd, ShmChannel::End::kPeer));
  close(memfd);
  absl::Mutex mu;
  std::string slept_and_read;  // under mu
  std::atomic<int> wakes{0};   // returns from WaitReadable
  std::atomic<bool> stop{false};
  std::atomic<pid_t> sleeper_tid{0};
  std::thread sleeper([&] {
    sleeper_tid.store(static_cast<pid_t>(syscall(SYS_gettid)));
    absl::MutexLock lock(&mu);
    while (!stop.load()) {
      if (!reader_end->WaitReadable(kForever, &mu).ok()) return;
      wakes.fetch_add(1);
      (void)reader_end->ReadAvailable(kRing, [&](const char* untrusted, size_t size) {
        slept_and_read.append(untrusted, size);
      });
    }
  });
  auto read_here = [&] {
    std::string taken;
    (void)reader_end->ReadAvailable(
        kRing, [&](const char* untrusted, size_t size) { taken.append(untrusted, size); });
    return taken;
  };
  // However the test ends, the sleeper is stopped and joined (an Interrupt ends its wait).
  bool locked = false;  // whether this thread holds mu
  absl::Cleanup join_sleeper = [&] {
    stop.store(true);
    reader_end->Interrupt();
    if (locked) mu.Unlock();
    sleeper.join();
  };
  auto wait_for_wakes = [&](int count) {
    const absl::Time give_up = In(absl::Seconds(5));
    while (wakes.load() < count && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(1));
    return wakes.load() >= count;
  };

  // How often the sleeper has gone to sleep: once more for each time it was woken.
  auto sleeps = [&] {
    std::ifstream status(absl::StrCat("/proc/self/task/", sleeper_tid.load(), "/status"));
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) {
        return std::stol(line.substr(line.find(':') + 1));
      }
    }
    return -1L;
  };

  // Its spin over, the sleeper has released the lock.
  absl::SleepFor(absl::Milliseconds(50));
  const long slept_before = sleeps();
  ASSERT_GT(slept_before, 0);
  ASSERT_TRUE(locked = mu.TryLock()) << "the sleeping reader holds its lock";
  reader_end->MuteSleepingReader();
  ASSERT_OK(writer_end->Write("a", In(absl::Seconds(5))));
  ASSERT_OK(reader_end->SpinReadable(In(absl::Seconds(5))));
  EXPECT_EQ(read_here(), "a");
  EXPECT_EQ(reader_end->SpinReadable(In(absl::Milliseconds(1))).code(),
            absl::StatusCode::kDeadlineExceeded);
  reader_end->UnmuteSleepingReader();
  locked = false;
  mu.Unlock();
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(sleeps(), slept_before) << "the sleeper was woken for bytes read in its place";

  // Bytes that came while it was muted, read by nobody: unmuting wakes it for them.
  ASSERT_TRUE(locked = mu.TryLock());
  reader_end->MuteSleepingReader();
  ASSERT_OK(writer_end->Write("b", In(absl::Seconds(5))));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(sleeps(), slept_before) << "a muted sleeper was woken by the peer";
  reader_end->UnmuteSleepingReader();
  locked = false;
  mu.Unlock();
  ASSERT_TRUE(wait_for_wakes(1)) << "unmuting did not wake the sleeper for unread bytes";
  // Later bytes wake it as before.
  ASSERT_OK(writer_end->Write("c", In(absl::Seconds(5))));
  ASSERT_TRUE(wait_for_wakes(2)) << "the unmuted sleeper was not woken by the peer";
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(slept_and_read, "bc");
  }

  // An Interrupt: SpinReadable reports it and leaves it; the sleeper then takes it and ends.
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE(locked = mu.TryLock());
  reader_end->MuteSleepingReader();
  reader_end->Interrupt();
  EXPECT_EQ(reader_end->SpinReadable(In(absl::Seconds(5))).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(reader_end->SpinReadable(In(absl::Seconds(5))).code(), absl::StatusCode::kCancelled);
  reader_end->UnmuteSleepingReader();
  stop.store(true);
  locked = false;
  mu.Unlock();
  std::move(join_sleeper).Invoke();
  EXPECT_EQ(wakes.load(), 2) << "the sleeper did not end on the Interrupt left for it";
}

}  // namespace
}  // namespace ffibox
