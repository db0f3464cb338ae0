#include "server/broker/service.h"

#include <unistd.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/errors.h"
#include "google/protobuf/arena.h"
#include "grpcpp/impl/rpc_service_method.h"
#include "grpcpp/support/method_handler.h"
#include "server/broker/client_stream.h"
#include "server/broker/message_codec.h"

namespace ffibox {
namespace {

// A request may take this many times the size limit once parsed. One of bytes takes about
// its size; one of values element by element (an array of pointers passed by value, a
// block's relocations) ten to twenty times its size, and one of empty submessages sixty
// and more.
constexpr uint64_t kParsedBytesPerLimitByte = 8;

// A Read that returns sooner than this found its request already there: the client sent it
// right behind the one before, without waiting for that one's answer (a pipeline). Waiting
// for a request costs at least a wakeup, which takes longer: over 25 µs for 99.8 % of the
// requests of a client that waits for each answer, under 10 µs for 86 % of those of a
// pipelining one (bench/call_bench, BM_FfiboxCallAdd and BM_FfiboxCallCosPipelined).
constexpr absl::Duration kQueuedReadTime = absl::Microseconds(10);

std::string ToString(grpc::string_ref value) { return std::string(value.data(), value.size()); }

// What the stream presented: its listener kind, its authorization metadata and the names of
// a client certificate the TLS handshake verified.
PresentedCredentials CredentialsOf(const grpc::ServerContext& context) {
  PresentedCredentials presented;
  // ffiboxd accepts its unix sockets itself and hands them to gRPC as "fd:N" connections
  // (server/broker/connection_acceptor.h); TCP connections of the main listeners are gRPC's own
  // ("ipv4:", "ipv6:"). Only the health-only server gets TCP connections as "fd:N", and it
  // serves no ffibox.v1.Ffibox.
  presented.unix_socket =
      absl::StartsWith(context.peer(), "unix:") || absl::StartsWith(context.peer(), "fd:");
  auto authorization = context.client_metadata().find("authorization");
  if (authorization != context.client_metadata().end()) {
    presented.authorization = ToString(authorization->second);
  }
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    for (const char* property : {"x509_common_name", "x509_subject_alternative_name"}) {
      for (const grpc::string_ref& name : auth->FindPropertyValues(property)) {
        presented.certificate_names.push_back(ToString(name));
      }
    }
  }
  return presented;
}

grpc::Status GrpcStatusOf(const absl::Status& status) {
  // absl::StatusCode and grpc::StatusCode share their numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace

FfiboxService::FfiboxService(SessionConfig config, AccessPolicy policy, BrokerMetrics* metrics)
    : config_(std::move(config)),
      allowlists_(std::move(policy.allowlists)),
      authenticator_(std::move(policy.identities), std::move(policy.local_identity)),
      quota_(policy.max_sessions),
      metrics_(metrics) {
  // What the generated Ffibox::Service does, with gRPC's raw bytes for the messages (the
  // generated code offers raw methods only to the async and callback APIs).
  AddMethod(new grpc::internal::RpcServiceMethod(
      kSessionMethod, grpc::internal::RpcMethod::BIDI_STREAMING,
      new grpc::internal::BidiStreamingHandler<FfiboxService, grpc::ByteBuffer, grpc::ByteBuffer>(
          [](FfiboxService* service, grpc::ServerContext* context,
             grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream) {
            return service->Session(context, stream);
          },
          this)));
}

grpc::Status FfiboxService::Session(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream) {
  const PresentedCredentials presented = CredentialsOf(*context);
  absl::StatusOr<const ClientIdentity*> identity = authenticator_.Authenticate(presented);
  if (!identity.ok()) return GrpcStatusOf(identity.status());
  absl::StatusOr<std::unique_ptr<SessionQuota::Ticket>> ticket =
      quota_.Acquire((*identity)->name, (*identity)->max_sessions);
  if (!ticket.ok()) return GrpcStatusOf(ticket.status());
  auto allowlist = allowlists_.find((*identity)->name);
  if (allowlist == allowlists_.end()) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        absl::StrCat("identity \"", (*identity)->name, "\" has no allowlist"));
  }
  SessionConfig config = config_;
  config.allowlist = allowlist->second;
  // Same-host channels only for clients on this host: those of the unix-socket listeners.
  if (!presented.unix_socket) config.local_door = nullptr;
  // Without a token on a unix socket: the local identity, which only ffiboxd's own user or
  // root can be (the socket is 0600 in an owner-only directory: listen_socket.h).
  config.client_reads_as_broker = presented.unix_socket && !presented.authorization.has_value();
  const std::string& identity_name = (*identity)->name;
  if (metrics_ != nullptr) config.metrics = metrics_->SessionStarted(identity_name);

  ClientStream client(
      stream, [context] { context->TryCancel(); }, config_.deadlines);
  ffibox::Session session(config, &client, absl::StrCat(getpid(), "-", next_session_.fetch_add(1)));
  // Each request is parsed into an arena and dropped with it once handled (the session
  // keeps copies of what it needs): a batch of thousands of calls costs a few arena blocks,
  // not an allocation and a free per call and value.
  google::protobuf::Arena arena;
  grpc::ByteBuffer received;
  grpc::Status ending = grpc::Status::OK;
  for (;;) {
    const absl::Time asked = absl::Now();
    if (!client.Read(&received)) {
      // The client closed its side (gRPC's WritesDone, CloseSend, the end of its request
      // iterator) without asking to close: what it sent is answered before the stream ends.
      if (!context->IsCancelled()) {
        session.FinishInFlight([context] { return context->IsCancelled(); });
      }
      break;
    }
    // A request that was there already when asked for came right behind the last one: the
    // client sends ahead instead of waiting for each answer.
    const bool client_waits = absl::Now() - asked >= kQueuedReadTime;
    // Refused before it is parsed, which would take the memory: a request over the size
    // limit, or one that would take many times its size once parsed.
    const absl::Status admitted =
        CheckReceived(received, v1::Request::descriptor(), config_.max_message_bytes,
                      kParsedBytesPerLimitByte * config_.max_message_bytes);
    if (absl::IsResourceExhausted(admitted)) {
      const RequestHead head = RequestHeadOf(received);
      session.RefuseUnparsed(
          head.id, head.op,
          absl::ResourceExhaustedError(absl::StrCat("request ", admitted.message())));
      received.Clear();
      continue;
    }
    auto* request = google::protobuf::Arena::CreateMessage<v1::Request>(&arena);
    if (!admitted.ok() || !ParseReceived(&received, request)) {
      // A message that fails to parse after its id was read (every encoder writes the id
      // first) is refused as that request, and the session goes on: gRPC's framing keeps the
      // next message whole. So is one nested deeper than protobuf parses (100 messages,
      // which a type of more than TypeLimits' 32 levels reaches). Without an id, the stream
      // ends.
      if (!admitted.ok() || request->id() == 0) {
        ending = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "a message on the stream is not an ffibox.v1.Request");
        break;
      }
      session.RefuseUnparsed(
          request->id(), request->op_case(),
          ErrorStatus(v1::INVALID_ARGUMENT,
                      absl::StrCat("request ", request->id(),
                                   " cannot be parsed as an ffibox.v1.Request (a malformed "
                                   "field, text that is not UTF-8, or messages nested more than "
                                   "100 deep: a type nests at most ",
                                   config_.type_limits.max_depth, " levels)")));
      arena.Reset();
      continue;
    }
    const bool more = session.HandleRequest(request, client_waits);
    arena.Reset();
    if (!more) break;
  }
  // The client closed, cancelled, disconnected or asked to close: no worker outlives this.
  // The errors of requests still in flight are written meanwhile, if the client takes them.
  client.Close();
  session.Shutdown();
  if (metrics_ != nullptr) metrics_->SessionEnded(identity_name);
  return ending;
}

}  // namespace ffibox
