#include "client/cpp/internal/local_path.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cpp/unix_server_check.h"
#include "core/call_answer.h"
#include "core/descriptor_passing.h"
#include "core/errors.h"
#include "core/framing.h"
#include "core/local_channel.h"
#include "core/piece_stream.h"

namespace ffibox {
namespace client_internal {
namespace {

// Connects to the unix socket `path` and writes `token`; returns the connection.
absl::StatusOr<int> KnockAtDoor(const std::string& path, const std::string& token,
                                absl::Duration timeout) {
  struct sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("same-host door path too long: ", path));
  }
  memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("socket: ", strerror(errno)));
  struct timeval wait = absl::ToTimeval(timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof(wait));
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&address), sizeof(address)) != 0 ||
      send(fd, token.data(), token.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(token.size())) {
    const int saved = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("the same-host door ", path, ": ", strerror(saved)));
  }
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalPath>> LocalPath::Connect(const v1::LocalChannelOpened& opened,
                                                              absl::Duration timeout) {
  absl::Status trusted = CheckUnixServer(absl::StrCat("unix:", opened.door_path()), timeout);
  if (!trusted.ok()) return trusted;
  absl::StatusOr<int> door = KnockAtDoor(opened.door_path(), opened.token(), timeout);
  if (!door.ok()) return door.status();
  absl::StatusOr<TaggedDescriptor> received = ReceiveDescriptor(*door);
  close(*door);
  if (!received.ok()) {
    return absl::UnavailableError(
        absl::StrCat("the same-host door ", opened.door_path(),
                     " handed over no channel: ", received.status().message()));
  }
  // The memfd is checked as any peer's: sealed, sized and headed as a channel must be.
  absl::StatusOr<std::unique_ptr<ShmChannel>> channel =
      ShmChannel::Attach(received->fd, ShmChannel::End::kCreator);
  close(received->fd);
  if (!channel.ok()) return channel.status();
  return std::unique_ptr<LocalPath>(new LocalPath(*std::move(channel), opened));
}

absl::StatusOr<v1::Response> LocalPath::Exchange(const v1::Request& request, absl::Time deadline) {
  const size_t length = request.ByteSizeLong();
  if (max_request_bytes_ != 0 && length > max_request_bytes_) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat("request of ", length, " bytes exceeds the limit of ",
                                    max_request_bytes_, " bytes"));
  }
  absl::Status sent = WriteFrame(
      *channel_, length,
      [&request](google::protobuf::io::CodedOutputStream* out) {
        request.SerializeWithCachedSizes(out);
      },
      deadline);
  // The worker runs only a whole frame: the call did not run.
  if (!sent.ok()) return absl::FailedPreconditionError(sent.message());
  auto malformed = [](absl::string_view why) {
    return ErrorStatus(v1::INTERNAL,
                       absl::StrCat("the worker's answer on the same-host channel ", why));
  };
  const ExpectedCallResult expected = ExpectedResultOf(request.call());
  // Read as it arrives: the buffer grows only with what the worker sent.
  FrameDecoder frames(kMaxLocalAnswerBytes);
  absl::StatusOr<FramePayload> frame =
      ReadFrameAsItArrives(*channel_, frames, deadline, kLocalAnswerProgress);
  if (absl::IsDataLoss(frame.status()) || absl::IsResourceExhausted(frame.status())) {
    return malformed(frame.status().message());
  }
  if (!frame.ok()) return frame.status();
  v1::Response response;
  if (!ParseFromOwnedPieces(std::move(frame->pieces), &response))
    return malformed("does not parse");
  if (response.id() != request.id()) {
    return malformed(absl::StrCat("answers request ", response.id(), ", not ", request.id()));
  }
  if (response.has_error()) {
    absl::Status code = CheckErrorCode(response.error());
    if (!code.ok()) return malformed(code.message());
    if (response.result_case() != v1::Response::RESULT_NOT_SET) {
      return malformed("carries both an error and a result");
    }
    if (response.error().has_batch_index()) return malformed("names a batch call");
  } else {
    if (!response.has_call()) return malformed("carries no call result");
    absl::Status checked = CheckCallResult(response.call(), expected);
    if (!checked.ok()) return malformed(checked.message());
  }
  // The generation is the one the broker named for this channel, whatever the worker says.
  response.set_generation(generation_);
  return response;
}

bool LocalPath::closed_by_worker() const {
  return channel_->LoadStatusWord(kLocalClosedWord) == kLocalClosedByWorker;
}

}  // namespace client_internal
}  // namespace ffibox
