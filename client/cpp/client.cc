#include "client/cpp/client.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace ffibox {

Client::Client(std::string address, std::shared_ptr<grpc::Channel> channel)
    : address_(std::move(address)), channel_(std::move(channel)) {}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const std::string& address,
                                                        const ConnectOptions& options) {
  if (address.empty()) return absl::InvalidArgumentError("empty ffiboxd address");
  grpc::ChannelArguments arguments;
  // The server caps what it sends (SessionOpened.max_message_bytes); the client takes it all.
  arguments.SetMaxReceiveMessageSize(-1);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), arguments);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot make a channel to ", address));
  }
  const auto deadline =
      std::chrono::system_clock::now() +
      std::chrono::microseconds(absl::ToInt64Microseconds(options.connect_timeout));
  if (!channel->WaitForConnected(deadline)) {
    return absl::UnavailableError(absl::StrCat("cannot reach ffiboxd at ", address, " within ",
                                               absl::FormatDuration(options.connect_timeout)));
  }
  return std::unique_ptr<Client>(new Client(address, std::move(channel)));
}

absl::StatusOr<std::unique_ptr<Session>> Client::OpenSession(const SessionOptions& options) {
  return Session::Open(channel_, options);
}

v1::Error ErrorOf(const absl::Status& status) { return ToProtoError(status); }

}  // namespace ffibox
