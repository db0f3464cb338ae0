#include "client/cpp/client.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/cpp/unix_server_check.h"
#include "core/errors.h"
#include "core/status_macros.h"
#include "grpcpp/support/client_interceptor.h"

namespace ffibox {
namespace {

// Adds the bearer token to the initial metadata of every call on the channel. (Call
// credentials would refuse a plaintext unix-socket channel.)
class BearerTokenInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BearerTokenInterceptor(const std::string* header) : header_(header) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", *header_});
    }
    methods->Proceed();
  }

 private:
  const std::string* const header_;
};

class BearerTokenInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenInterceptorFactory(const std::string& token)
      : header_(absl::StrCat("Bearer ", token)) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new BearerTokenInterceptor(&header_);
  }

 private:
  const std::string header_;  // lives as long as the channel, which owns the factory
};

bool UsesTls(const ConnectOptions& options) {
  return options.tls || !options.tls_root_certs.empty() || !options.tls_client_cert_chain.empty() ||
         !options.tls_client_key.empty();
}

std::shared_ptr<grpc::ChannelCredentials> CredentialsFor(const ConnectOptions& options) {
  if (!UsesTls(options)) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.tls_root_certs;
  ssl.pem_cert_chain = options.tls_client_cert_chain;
  ssl.pem_private_key = options.tls_client_key;
  return grpc::SslCredentials(ssl);
}

bool IsUnixTarget(const std::string& address) {
  return absl::StartsWith(address, "unix:") || absl::StartsWith(address, "unix-abstract:");
}

// The service config of a TCP target: its load-balancing policy and, with round_robin,
// health checks of the ffibox service.
absl::StatusOr<std::string> ServiceConfigFor(const ConnectOptions& options) {
  const std::string& policy = options.load_balancing_policy;
  if (policy != "round_robin" && policy != "pick_first") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown load-balancing policy \"", policy, "\" (round_robin or pick_first)"));
  }
  std::string config = absl::StrCat(R"({"loadBalancingConfig": [{")", policy, R"(": {}}])");
  if (options.health_check && policy == "round_robin") {
    absl::StrAppend(&config, R"(, "healthCheckConfig": {"serviceName": "ffibox.v1.Ffibox"})");
  }
  absl::StrAppend(&config, "}");
  return config;
}

// A duration as a channel argument's milliseconds (at least 1, at most INT_MAX).
int MillisecondsArgument(absl::Duration duration) {
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(duration), 1, INT_MAX));
}

}  // namespace

Client::Client(std::string address, std::shared_ptr<grpc::Channel> channel)
    : address_(std::move(address)), channel_(std::move(channel)) {}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const std::string& address,
                                                        const ConnectOptions& options) {
  if (address.empty()) return absl::InvalidArgumentError("empty ffiboxd address");
  const absl::Time deadline = absl::Now() + options.connect_timeout;
  if (IsUnixTarget(address) && UsesTls(options)) {
    return absl::InvalidArgumentError(absl::StrCat("TLS is for TCP targets; ffiboxd's unix socket ",
                                                   address,
                                                   " is plaintext, checked by its owner instead"));
  }
  // A unix socket has no TLS: nothing is sent until the server is known to be ours or root's.
  if (absl::Status trusted = CheckUnixServer(address, options.connect_timeout); !trusted.ok()) {
    return trusted;
  }
  if (!options.bearer_token.empty() && !IsUnixTarget(address) && !UsesTls(options)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a bearer token is sent to a TCP target only over TLS; turn TLS on to reach ",
                     address, " (ffiboxd serves TCP only with TLS)"));
  }
  grpc::ChannelArguments arguments;
  // The server caps what it sends (SessionOpened.max_message_bytes); the client takes it all.
  arguments.SetMaxReceiveMessageSize(-1);
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, MillisecondsArgument(options.keepalive_time));
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, MillisecondsArgument(options.keepalive_timeout));
  // A session may wait long for a call's answer with nothing else sent: pings go on.
  arguments.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  if (!IsUnixTarget(address)) {
    FFIBOX_ASSIGN_OR_RETURN(const std::string service_config, ServiceConfigFor(options));
    arguments.SetServiceConfigJSON(service_config);
    // The policy above is the client's; DNS TXT records do not override it.
    arguments.SetInt(GRPC_ARG_SERVICE_CONFIG_DISABLE_RESOLUTION, 1);
  }
  if (!options.tls_server_name.empty()) {
    arguments.SetSslTargetNameOverride(options.tls_server_name);
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  if (!options.bearer_token.empty()) {
    interceptors.push_back(std::make_unique<BearerTokenInterceptorFactory>(options.bearer_token));
  }
  std::shared_ptr<grpc::Channel> channel = grpc::experimental::CreateCustomChannelWithInterceptors(
      address, CredentialsFor(options), arguments, std::move(interceptors));
  if (channel == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot make a channel to ", address));
  }
  if (!channel->WaitForConnected(absl::ToChronoTime(deadline))) {
    return absl::UnavailableError(absl::StrCat("cannot reach ffiboxd at ", address, " within ",
                                               absl::FormatDuration(options.connect_timeout)));
  }
  return std::unique_ptr<Client>(new Client(address, std::move(channel)));
}

absl::StatusOr<std::unique_ptr<Session>> Client::OpenSession(const SessionOptions& options) {
  return Session::Open(channel_, options);
}

v1::Error ErrorOf(const absl::Status& status) {
  v1::Error error = ToProtoError(status);
  // A status this client made itself when the server could not be reached or the session's
  // stream ended carries no server error: UNAVAILABLE, not a bug in ffibox.
  if (error.code() == v1::INTERNAL && (status.code() == absl::StatusCode::kUnavailable ||
                                       status.code() == absl::StatusCode::kCancelled)) {
    error.set_code(v1::UNAVAILABLE);
  }
  return error;
}

}  // namespace ffibox
