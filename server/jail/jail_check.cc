#include "server/jail/jail_check.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "server/broker/worker_process.h"
#include "server/jail/cgroups.h"
#include "server/jail/jail_layers.h"
#include "server/jail/seccomp_policy.h"
#include "server/jail/user_namespace.h"

namespace ffibox {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

std::string NamespaceId(pid_t pid, const char* name) {
  char target[128] = {};
  std::string path =
      pid > 0 ? absl::StrCat("/proc/", pid, "/ns/", name) : absl::StrCat("/proc/self/ns/", name);
  ssize_t n = readlink(path.c_str(), target, sizeof(target) - 1);
  return n > 0 ? std::string(target, n) : "";
}

// The value of "Key:" in /proc/<pid>/status.
std::string StatusField(const std::string& status, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (absl::ConsumePrefix(&line, key) && absl::ConsumePrefix(&line, ":")) {
      return std::string(absl::StripAsciiWhitespace(line));
    }
  }
  return "";
}

class Report {
 public:
  void Line(absl::string_view layer, bool requested, bool active, absl::string_view detail) {
    std::string state;
    if (!requested) {
      state = absl::StartsWith(detail, "waived") ? std::string(detail)
                                                 : "disabled in the configuration";
    } else if (active) {
      state = detail.empty() ? "active" : absl::StrCat("active (", detail, ")");
    } else {
      state = absl::StrCat("unavailable: ", detail);
      all_active_ = false;
    }
    printf("%-34s %s\n", absl::StrCat(layer, ":").c_str(), state.c_str());
  }
  bool all_active() const { return all_active_; }

 private:
  bool all_active_ = true;
};

}  // namespace

int RunJailCheck(const JailOptions& options, const std::string& worker_path,
                 std::shared_ptr<const WorkerExecutables> executables) {
  printf("ffiboxd --check-jail: starting a jailed worker (%s)\n", worker_path.c_str());
  if (!options.enabled) {
    printf("the jail is disabled in the configuration: workers are crash-isolated only\n");
    return 1;
  }
  // The cgroup layer's tree, made before the worker exists: on cgroup v2 ffiboxd may move
  // into a leaf of its cgroup (cgroup_placement.h), which works only while no other process
  // is there. It outlives the worker's reap below (a group is removed once empty).
  absl::StatusOr<std::unique_ptr<CgroupTree>> tree = absl::UnavailableError("not made");
  if (JailLayerRequested(options, JailLayer::kCgroup)) {
    tree = CgroupTree::Create(options.total_worker_memory_bytes);
  }
  WorkerLaunchOptions launch;
  launch.worker_path = worker_path;
  launch.executables = std::move(executables);
  launch.jail = options;
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(launch);
  if (!worker.ok()) {
    printf("cannot start a jailed worker: %s\n", std::string(worker.status().message()).c_str());
    return 2;
  }
  const pid_t pid = (*worker)->worker_pid();
  // The worker applies rlimits and seccomp itself right after exec: wait for that.
  std::string status;
  for (int i = 0; i < 200; ++i) {
    status = ReadFile(absl::StrCat("/proc/", pid, "/status"));
    if (StatusField(status, "Seccomp") == "2") break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  const SpawnedLayers& layers = (*worker)->jail_layers();
  Report report;

  struct Namespace {
    JailLayer layer;
    const char* proc_name;
  };
  const Namespace namespaces[] = {
      {JailLayer::kUserNamespace, "user"}, {JailLayer::kPidNamespace, "pid"},
      {JailLayer::kNetNamespace, "net"},   {JailLayer::kIpcNamespace, "ipc"},
      {JailLayer::kUtsNamespace, "uts"},   {JailLayer::kMountNamespace, "mnt"}};
  for (const Namespace& ns : namespaces) {
    const int index = static_cast<int>(ns.layer);
    std::string own = NamespaceId(0, ns.proc_name);
    std::string its = NamespaceId(pid, ns.proc_name);
    bool separate = !its.empty() && its != own;
    std::string detail = layers.active[index] ? (separate ? its : "but the worker shares ours")
                                              : layers.reasons[index];
    if (ns.layer == JailLayer::kUserNamespace && separate) {
      absl::StrAppend(&detail, "; worker root = host uid ",
                      StatusField(status, "Uid").substr(0, StatusField(status, "Uid").find('\t')));
    }
    report.Line(JailLayerName(ns.layer), JailLayerRequested(options, ns.layer),
                layers.active[index] && separate, detail);
  }

  const int fs = static_cast<int>(JailLayer::kFilesystem);
  std::string fs_detail = layers.reasons[fs];
  bool fs_active = layers.active[fs];
  if (fs_active) {
    struct stat st;
    std::string root = absl::StrCat("/proc/", pid, "/root");
    bool shadow_visible = stat((root + "/etc/shadow").c_str(), &st) == 0;
    if (shadow_visible) {
      fs_active = false;
      fs_detail = "the worker's root shows /etc/shadow";
    } else {
      fs_detail = absl::StrCat(
          "system libraries and data",
          options.visible_paths.empty()
              ? ""
              : absl::StrCat(" + ", options.visible_paths.size(), " visible paths"),
          " read-only, ", options.tmp_bytes >> 10, " KiB tmpfs /tmp; /etc/shadow not visible");
    }
  }
  report.Line(JailLayerName(JailLayer::kFilesystem),
              JailLayerRequested(options, JailLayer::kFilesystem), fs_active, fs_detail);
  const int proc = static_cast<int>(JailLayer::kProc);
  report.Line(JailLayerName(JailLayer::kProc), JailLayerRequested(options, JailLayer::kProc),
              layers.active[proc], layers.active[proc] ? "" : layers.reasons[proc]);

  // The cgroup layer: the broker puts each worker in its own group; here, a group made for
  // this worker with the configured limits. It outlives the worker's reap below.
  absl::StatusOr<std::unique_ptr<WorkerCgroup>> group = absl::UnavailableError("not made");
  if (JailLayerRequested(options, JailLayer::kCgroup)) {
    group = tree.ok() ? (*tree)->Attach(pid, WorkerCgroupLimits{options.worker_pids_max,
                                                                options.address_space_bytes,
                                                                options.idle_cpu_percent})
                      : absl::StatusOr<std::unique_ptr<WorkerCgroup>>(tree.status());
    report.Line(JailLayerName(JailLayer::kCgroup), true, group.ok(),
                group.ok()
                    ? absl::StrCat((*tree)->Describe(), ": ", options.worker_pids_max,
                                   " threads and processes, ", options.address_space_bytes >> 20,
                                   " MiB, ", options.idle_cpu_percent, "% of a CPU while idle")
                    : std::string(group.status().message()));
  } else {
    std::string waived;
    for (const std::string& entry : options.waived) {
      if (absl::StartsWith(entry, "cgroup (")) waived = entry.substr(7);
    }
    report.Line(JailLayerName(JailLayer::kCgroup), false, false,
                waived.empty() ? "" : absl::StrCat("waived ", waived));
  }

  std::string uid = StatusField(status, "Uid");
  const std::string host_uid = uid.substr(0, uid.find('\t'));
  const bool not_root = host_uid != "0" && !host_uid.empty();
  report.Line("ids", true, not_root, absl::StrCat("host uid ", DescribeWorkerIds()));
  std::string caps = StatusField(status, "CapEff");
  report.Line("capabilities dropped", true, caps == "0000000000000000",
              caps == "0000000000000000" ? "" : absl::StrCat("CapEff ", caps));
  report.Line("no_new_privs", true, StatusField(status, "NoNewPrivs") == "1",
              StatusField(status, "NoNewPrivs") == "1" ? "" : "the worker can gain privileges");

  std::string limits = ReadFile(absl::StrCat("/proc/", pid, "/limits"));
  std::string rlimit_detail;
  for (absl::string_view line : absl::StrSplit(limits, '\n')) {
    for (absl::string_view name : {"Max core file size", "Max address space", "Max cpu time",
                                   "Max open files", "Max processes", "Max file size"}) {
      if (absl::StartsWith(line, name)) {
        std::vector<absl::string_view> words =
            absl::StrSplit(line.substr(name.size()), ' ', absl::SkipWhitespace());
        if (!words.empty()) {
          absl::StrAppend(&rlimit_detail, rlimit_detail.empty() ? "" : ", ",
                          absl::StripPrefix(name, "Max "), " ", words[0]);
        }
      }
    }
  }
  bool core_zero = absl::StrContains(limits, "Max core file size        0 ");
  report.Line("rlimits", true, core_zero, rlimit_detail);

  // seccomp: a second worker calls execve once jailed; the kernel must report it on the
  // listener, and the broker kills the worker.
  (*worker)->Kill();
  (*worker)->Reap();
  launch.jail_self_test = true;
  std::string seccomp_detail;
  bool seccomp_active = false;
  absl::StatusOr<std::unique_ptr<WorkerProcess>> probe = WorkerProcess::Start(launch);
  if (!probe.ok()) {
    seccomp_detail = absl::StrCat("cannot start the self-test worker: ", probe.status().message());
  } else {
    bool reported = (*probe)->WaitForSeccompViolation(absl::Seconds(10));
    WorkerExit exit = (*probe)->Reap(absl::Seconds(10));
    seccomp_active = reported && SyscallName(exit.seccomp_violation) == "execve";
    seccomp_detail =
        seccomp_active
            ? absl::StrCat(options.seccomp_policy,
                           " policy; the kernel reported the test worker's execve and it was "
                           "killed")
            : absl::StrCat("the self-test worker's execve was not reported (signal ", exit.signal,
                           ", exit ", exit.exit_code, ")");
  }
  report.Line("seccomp", true, seccomp_active, seccomp_detail);
  printf("%s\n", report.all_active() ? "all requested layers are active"
                                     : "some requested layers are NOT active");
  return report.all_active() ? 0 : 1;
}

}  // namespace ffibox
