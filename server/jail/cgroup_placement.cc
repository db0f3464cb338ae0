#include "server/jail/cgroup_placement.h"

#include <errno.h>
#include <string.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace ffibox {

CgroupHierarchies ParseCgroupHierarchies(absl::string_view proc_self_cgroup,
                                         absl::string_view mountinfo) {
  CgroupHierarchies found;
  found.v1.assign(3, "");
  std::string v2_path;
  std::vector<std::pair<std::vector<std::string>, std::string>> v1_paths;  // controllers, path
  for (absl::string_view line : absl::StrSplit(proc_self_cgroup, '\n')) {
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (parts[0] == "0" && parts[1].empty()) {
      v2_path = parts[2];
    } else {
      v1_paths.emplace_back(absl::StrSplit(parts[1], ','), parts[2]);
    }
  }
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n')) {
    // "id parent major:minor root mountpoint options ... - fstype source superoptions"
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || dash == fields.end() || dash + 3 > fields.end()) continue;
    const std::string& root = fields[3];
    const std::string& mount_point = fields[4];
    const std::string& fstype = *(dash + 1);
    // The mount shows the hierarchy from `root`; this process's path is relative to it.
    auto below_root = [&root](const std::string& path) -> std::optional<std::string> {
      if (root == "/") return path;
      if (path == root) return std::string("/");
      if (absl::StartsWith(path, root + "/")) return path.substr(root.size());
      return std::nullopt;
    };
    if (fstype == "cgroup2" && !v2_path.empty() && found.v2.empty()) {
      std::optional<std::string> relative = below_root(v2_path);
      if (relative.has_value()) found.v2 = mount_point + (*relative == "/" ? "" : *relative);
    } else if (fstype == "cgroup") {
      std::vector<std::string> options = absl::StrSplit(*(dash + 3), ',');
      for (int i = 0; i < 3; ++i) {
        if (!found.v1[i].empty() ||
            std::find(options.begin(), options.end(), kCgroupControllers[i]) == options.end()) {
          continue;
        }
        for (const auto& [controllers, path] : v1_paths) {
          if (std::find(controllers.begin(), controllers.end(), kCgroupControllers[i]) ==
              controllers.end()) {
            continue;
          }
          std::optional<std::string> relative = below_root(path);
          if (relative.has_value()) {
            found.v1[i] = mount_point + (*relative == "/" ? "" : *relative);
          }
        }
      }
    }
  }
  return found;
}

std::string WorkerTreeName(pid_t pid) { return absl::StrCat("ffibox-", pid); }

std::string BrokerLeafName(pid_t pid) { return absl::StrCat("ffibox-", pid, "-broker"); }

std::optional<pid_t> OwnerOfGroup(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, "ffibox-")) return std::nullopt;
  absl::ConsumeSuffix(&name, "-broker");
  pid_t pid = 0;
  if (!absl::SimpleAtoi(name, &pid) || pid <= 0) return std::nullopt;
  return pid;
}

std::string DelegatedV2Cgroup(const std::string& own, pid_t pid) {
  const std::string leaf = "/" + BrokerLeafName(pid);
  if (absl::EndsWith(own, leaf)) return own.substr(0, own.size() - leaf.size());
  return own;
}

ControllersRefused AfterControllersRefused(int error, bool broker_in_leaf) {
  return error == EBUSY && !broker_in_leaf ? ControllersRefused::kMoveBrokerToLeaf
                                           : ControllersRefused::kFail;
}

std::vector<pid_t> OtherProcesses(absl::string_view procs, pid_t self) {
  std::vector<pid_t> others;
  for (absl::string_view line : absl::StrSplit(procs, '\n', absl::SkipWhitespace())) {
    pid_t pid = 0;
    if (absl::SimpleAtoi(line, &pid) && pid != self) others.push_back(pid);
  }
  return others;
}

std::string ControllersRefusedMessage(const std::string& dir, int error,
                                      const std::vector<pid_t>& others) {
  std::string message = absl::StrCat(
      "cgroup v2: cannot enable the pids, memory and cpu controllers for the children of ", dir,
      " (writing ", dir, "/cgroup.subtree_control: ", strerror(error), ")");
  if (error == EBUSY && !others.empty()) {
    absl::StrAppend(&message, ": besides ffiboxd, ", dir, "/cgroup.procs lists process",
                    others.size() == 1 ? " " : "es ", absl::StrJoin(others, ", "),
                    ", and the kernel gives no controllers to the children of a cgroup that "
                    "holds processes; run ffiboxd in a cgroup of its own (a systemd unit with "
                    "Delegate=yes whose only process is ffiboxd, or ffiboxd as the only process "
                    "of its container)");
  }
  return message;
}

}  // namespace ffibox
