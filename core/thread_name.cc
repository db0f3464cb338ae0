#include "core/thread_name.h"

#include <pthread.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace ffibox {

namespace {

void Name(pthread_t thread, absl::string_view name) {
  const std::string cut(name.substr(0, 15));
  pthread_setname_np(thread, cut.c_str());
}

}  // namespace

void NameThisThread(absl::string_view name) { Name(pthread_self(), name); }

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
