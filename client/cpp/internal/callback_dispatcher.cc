#include "client/cpp/internal/callback_dispatcher.h"

#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/call_answer.h"
#include "core/errors.h"
#include "core/thread_name.h"

namespace ffibox {
namespace client_internal {
namespace {

// The dispatcher whose callback thread this is (null on every other thread).
thread_local const CallbackDispatcher* serving_dispatcher = nullptr;

// The handlers this thread is running, innermost first: a handler of one session may call
// into another whose callback then runs here too (RunHere, or its callback thread's).
struct ServingFrame {
  const CallbackDispatcher* dispatcher;
  uint64_t invocation;
  const ServingFrame* outer;
};
thread_local const ServingFrame* serving_frames = nullptr;

// Pushes a frame for the life of the scope.
class ServingScope {
 public:
  ServingScope(const CallbackDispatcher* dispatcher, uint64_t invocation)
      : frame_{dispatcher, invocation, serving_frames} {
    serving_frames = &frame_;
  }
  ~ServingScope() { serving_frames = frame_.outer; }
  ServingScope(const ServingScope&) = delete;
  ServingScope& operator=(const ServingScope&) = delete;

 private:
  const ServingFrame frame_;
};

bool IsReady(std::future<absl::StatusOr<v1::Response>>& answer) {
  return answer.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

}  // namespace

CallbackDispatcher::CallbackDispatcher(AnswerSender send) : send_(std::move(send)) {}

CallbackDispatcher::~CallbackDispatcher() { Stop(); }

void CallbackDispatcher::Register(uint64_t id, Handler handler, v1::Signature signature,
                                  ScalarHandler scalar) {
  absl::MutexLock lock(&mu_);
  handlers_[id] = std::make_shared<const Registered>(
      Registered{std::move(handler), std::move(signature), std::move(scalar)});
  if (!started_ && !stopped_) {
    started_ = true;
    thread_ = std::thread([this] { Loop(); });
    NameThread(thread_, "ffibox-callback");  // named before it may first run
  }
}

void CallbackDispatcher::Unregister(uint64_t id) {
  std::shared_ptr<const Registered> handler;  // destroyed outside the lock
  absl::MutexLock lock(&mu_);
  auto it = handlers_.find(id);
  if (it == handlers_.end()) return;
  handler = std::move(it->second);
  handlers_.erase(it);
}

void CallbackDispatcher::Deliver(v1::Response message) {
  {
    absl::MutexLock lock(&mu_);
    if (started_ && !stopped_) {
      invokes_.push_back(std::move(message));
      return;
    }
  }
  Refuse(message.callback_invoke());
}

void CallbackDispatcher::ForgetGeneration(uint64_t generation) {
  if (generation <= lost_generation_.load()) return;
  lost_generation_.store(generation);
  std::deque<v1::Response> kept;  // the others are destroyed outside the lock
  absl::MutexLock lock(&mu_);
  for (v1::Response& message : invokes_) {
    // Unstamped (0), as Run takes it: not known to be of that worker.
    if (message.generation() == 0 || message.generation() > generation) {
      kept.push_back(std::move(message));
    }
  }
  invokes_.swap(kept);
}

bool CallbackDispatcher::OnCallbackThread() const { return serving_dispatcher == this; }

uint64_t CallbackDispatcher::CurrentInvocation() const {
  for (const ServingFrame* frame = serving_frames; frame != nullptr; frame = frame->outer) {
    if (frame->dispatcher == this) return frame->invocation;
  }
  return 0;
}

void CallbackDispatcher::RunHere(const v1::Response& message) {
  bool refuse;
  {
    absl::MutexLock lock(&mu_);
    refuse = !started_ || stopped_;
  }
  if (refuse) return Refuse(message.callback_invoke());
  Run(message);
}

absl::StatusOr<v1::Response> CallbackDispatcher::AwaitServing(
    std::future<absl::StatusOr<v1::Response>>& answer) {
  for (;;) {
    v1::Response message;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this, &answer]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return IsReady(answer) || !invokes_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (IsReady(answer)) break;
      message = std::move(invokes_.front());
      invokes_.pop_front();
    }
    Run(message);
  }
  return answer.get();
}

void CallbackDispatcher::Wake() {
  // Releasing the mutex re-evaluates the condition AwaitServing waits under.
  absl::MutexLock lock(&mu_);
}

void CallbackDispatcher::Stop() {
  absl::flat_hash_map<uint64_t, std::shared_ptr<const Registered>> handlers;
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
    handlers.swap(handlers_);
    invokes_.clear();
  }
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();  // stopped from inside a handler: the loop ends on return
    } else {
      thread_.join();
    }
  }
}

void CallbackDispatcher::Refuse(const v1::CallbackInvoke& invoke) {
  v1::Request request;
  request.mutable_callback_return()->set_invocation(invoke.invocation());
  request.mutable_callback_return()->set_error(
      "the ffibox C++ client does not define callbacks; none should have been invoked");
  send_(std::move(request));
}

void CallbackDispatcher::Loop() {
  serving_dispatcher = this;
  for (;;) {
    v1::Response message;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopped_ || !invokes_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stopped_) return;
      message = std::move(invokes_.front());
      invokes_.pop_front();
    }
    Run(message);
  }
}

std::shared_ptr<const CallbackDispatcher::Registered> CallbackDispatcher::Find(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = handlers_.find(id);
  return it != handlers_.end() ? it->second : nullptr;
}

void CallbackDispatcher::Run(const v1::Response& message) {
  if (message.generation() != 0 && message.generation() <= lost_generation_.load()) return;
  const v1::CallbackInvoke& invoke = message.callback_invoke();
  const std::shared_ptr<const Registered> registered = Find(invoke.callback());
  v1::Request request;
  {
    const ServingScope serving(this, invoke.invocation());
    *request.mutable_callback_return() =
        Answer(registered != nullptr ? &registered->handler : nullptr, message);
  }
  send_(std::move(request));  // answered with done; nothing waits for it
}

absl::StatusOr<v1::CallbackReturn> CallbackDispatcher::RunChecked(const v1::Response& message) {
  const v1::CallbackInvoke& invoke = message.callback_invoke();
  const std::shared_ptr<const Registered> registered = Find(invoke.callback());
  if (registered != nullptr) {
    std::vector<std::pair<uint32_t, uint64_t>> shipped;
    // This client defines its callbacks without buffer_bytes: pointees come alone.
    absl::Status checked =
        CheckCallbackInvoke(invoke, registered->signature, /*buffer_bytes=*/0, &shipped);
    if (!checked.ok()) return ErrorStatus(v1::INTERNAL, checked.message());
  } else if (invoke.invocation() == 0) {
    return ErrorStatus(v1::INTERNAL, "callback invocation with id 0");
  }
  return Answer(registered != nullptr ? &registered->handler : nullptr, message);
}

std::optional<ScalarReturn> CallbackDispatcher::RunScalar(const ScalarInvoke& invoke) {
  const std::shared_ptr<const Registered> registered = Find(invoke.callback);
  // What RunChecked checks of an invoke without pointees: its id and its arguments' count
  // (each argument is a scalar, never empty).
  if (registered == nullptr || registered->scalar == nullptr || invoke.invocation == 0 ||
      invoke.args.size() != static_cast<size_t>(registered->signature.params_size())) {
    return std::nullopt;
  }
  return registered->scalar(invoke.args);
}

v1::CallbackReturn CallbackDispatcher::Answer(const Handler* handler, const v1::Response& message) {
  const v1::CallbackInvoke& invoke = message.callback_invoke();
  v1::CallbackReturn answer;
  if (handler == nullptr) {
    answer.set_error(absl::StrCat("callback ", invoke.callback(),
                                  " has no handler in this client (it was freed)"));
  } else {
    answer = (*handler)(message);
  }
  answer.set_invocation(invoke.invocation());
  return answer;
}

}  // namespace client_internal
}  // namespace ffibox
