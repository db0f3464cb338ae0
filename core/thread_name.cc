#include "core/thread_name.h"

#include <pthread.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ffibox {

namespace {

void Name(pthread_t thread, absl::string_view name) {
  const std::string cut(name.substr(0, 15));
  pthread_setname_np(thread, cut.c_str());
}

}  // namespace

void NameThisThread(absl::string_view name) { Name(pthread_self(), name); }

absl::StatusOr<std::thread> StartThread(absl::string_view name, std::function<void()> body) {
  try {
    return std::thread([name = std::string(name), body = std::move(body)] {
      NameThisThread(name);
      body();
    });
  } catch (const std::system_error& error) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot start a thread (", name, "): ", error.what(),
                     " (the task limit of ffiboxd's user or cgroup, or its memory)"));
  }
}

void NameThread(std::thread& thread, absl::string_view name) { Name(thread.native_handle(), name); }

int ThreadsNamed(absl::string_view name) {
  int count = 0;
  std::error_code error;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", error)) {
    std::ifstream comm(task.path() / "comm");
    std::string line;
    if (std::getline(comm, line) && line == name) ++count;
  }
  return count;
}

}  // namespace ffibox
