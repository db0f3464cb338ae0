// `ffiboxd --check-jail`: starts real workers through every layer of the jail and
// reports, one line per layer, whether it is active on this host, verified from outside
// the worker (its /proc entries: namespaces, ids, capabilities, no_new_privs, seccomp,
// rlimits, what its root shows) and by a worker that calls execve once jailed and must die
// of SIGSYS.
#ifndef FFIBOX_SERVER_JAIL_JAIL_CHECK_H_
#define FFIBOX_SERVER_JAIL_JAIL_CHECK_H_

#include <memory>
#include <string>

#include "server/jail/jail_options.h"

namespace ffibox {

class WorkerExecutables;

// Prints the report to stdout. Returns 0 when every layer `options` asks for is active,
// 1 when some is unavailable, 2 when no jailed worker could be started at all. The workers
// run `executables` (ffiboxd's, opened at its start), or the binaries at `worker_path` when
// null.
int RunJailCheck(const JailOptions& options, const std::string& worker_path,
                 std::shared_ptr<const WorkerExecutables> executables = nullptr);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_JAIL_CHECK_H_
