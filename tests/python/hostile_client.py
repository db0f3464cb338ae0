"""A user's program that loads libffibox_hostile.so with `from ffibox import ctypes` and no
server address, so the client starts its private ffiboxd; prints one JSON object saying what
each attack returned (test_jail_fails_closed.py runs it as root and as an ordinary user).

    python3 hostile_client.py '{"library": "/tmp/x/libffibox_hostile.so",
                               "read": ["/etc/shadow"], "create": ["/etc/x"]}'
    python3 hostile_client.py '{"limits_library": "/tmp/x/libffibox_test.so", "threads": 3000}'

Standalone on purpose: it is copied next to the binaries an ordinary user runs. What the
library writes to its stdout and stderr reaches this process's stderr (the client's default
output handler), so stdout holds only the JSON.
"""
import json
import os
import sys
import time


class HostileLibrary:
    """libffibox_hostile.so's functions with Python signatures; `ct` is the ctypes module
    the library was loaded with (ffibox.ctypes or the stdlib's)."""

    def __init__(self, library, ct) -> None:
        self.library = library
        self.ct = ct
        for name in ("hostile_read_file", "hostile_create_file", "hostile_write_fd",
                     "hostile_read_init_cmdline", "hostile_fd_type", "hostile_fd_inode"):
            getattr(library, name).restype = ct.c_long

    def read(self, path: str, capacity: int = 4096):
        """(bytes read or -errno, the bytes)."""
        buffer = self.ct.create_string_buffer(capacity)
        n = self.library.hostile_read_file(path.encode(), buffer, self.ct.c_long(capacity))
        return n, buffer.raw[:max(n, 0)]

    def create(self, path: str, text: str = "written by a hostile library\n") -> int:
        return self.library.hostile_create_file(path.encode(), text.encode())

    def open_process_memory(self, pid: int) -> int:
        return self.library.hostile_open_process_memory(pid)

    def write_fd(self, fd: int, text: bytes) -> int:
        return self.library.hostile_write_fd(fd, text)

    def truncate_fd(self, fd: int) -> int:
        return self.library.hostile_truncate_fd(fd)

    def allocate_fd(self, fd: int, size: int) -> int:
        return self.library.hostile_allocate_fd(fd, self.ct.c_long(size))

    def init_cmdline(self):
        """(bytes read or -errno, /proc/1/cmdline as the worker sees it)."""
        buffer = self.ct.create_string_buffer(65536)
        n = self.library.hostile_read_init_cmdline(buffer, self.ct.c_long(65536))
        return n, buffer.raw[:max(n, 0)]

    def fd_type(self, fd: int) -> int:
        """st_mode & S_IFMT of the worker's descriptor `fd`, or -errno (-EBADF: not open)."""
        return self.library.hostile_fd_type(fd)

    def fd_inode(self, fd: int) -> int:
        return self.library.hostile_fd_inode(fd)

    def descriptors(self, highest: int = 255):
        """{fd: (type, inode)} of every descriptor the worker has open up to `highest`."""
        found = {}
        for fd in range(highest + 1):
            kind = self.fd_type(fd)
            if kind >= 0:
                found[fd] = (kind, self.fd_inode(fd))
        return found


def child_pids(parent: int, name: str):
    """Pids of `parent`'s children whose command name is `name` (pgrep -P)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as stat:
                fields = stat.read()
        except OSError:
            continue
        comm = fields[fields.index("(") + 1:fields.rindex(")")]
        ppid = int(fields[fields.rindex(")") + 2:].split()[1])
        if ppid == parent and comm == name:
            pids.append(int(entry))
    return pids


def open_memory_errno(pid: int) -> int:
    """0 when this process can open /proc/`pid`/mem read-write, else the errno."""
    try:
        with open("/proc/%d/mem" % pid, "r+b"):
            return 0
    except OSError as error:
        return error.errno


def relayed_output(stream):
    """A list that collects what `stream` (a SessionStream) relays of the library's output,
    which still goes on to the default handler (this process's stderr)."""
    seen = []
    forward = getattr(stream, "on_output", None)
    if forward is None:
        return None  # a client that does not relay the library's output

    def on_output(name, data):
        seen.append(data)
        forward(name, data)

    stream.on_output = on_output
    return seen


def wait_for_output(seen, text: bytes, timeout: float = 10) -> bool:
    if seen is None:
        return False
    deadline = time.monotonic() + timeout
    while text not in b"".join(seen):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def start_threads(wanted: dict) -> dict:
    """Starts `wanted["threads"]` threads that outlive the call in one session's worker
    (with the limits test library), then 50 in another session's worker."""
    import ffibox
    from ffibox import ctypes
    from ffibox._stubs import pb
    greedy = ctypes._default_session()
    library = ctypes.CDLL(wanted["limits_library"])
    library.start_sleeping_threads.argtypes = [ctypes.c_int]
    results = {"worker_pids_max": greedy.worker_pids_max,
               "waived_jail_layers": list(greedy.waived_jail_layers),
               "started": library.start_sleeping_threads(wanted["threads"])}
    # Told before the reply over the stream; at the broker's next look (within a quarter
    # second) for a call on the same-host channel, which the private server gives by default.
    told = time.monotonic() + 5
    while True:
        results["limit_events"] = [event.error.message for event in greedy.stream.events
                                   if event.kind == pb.SessionEvent.LIMIT_REACHED]
        if results["limit_events"] or time.monotonic() > told:
            break
        time.sleep(0.05)
    with ffibox.connect().session() as bystander:
        other = bystander.CDLL(wanted["limits_library"])
        other.start_sleeping_threads.argtypes = [ctypes.c_int]
        results["bystander_started"] = other.start_sleeping_threads(50)
    return results


def main() -> None:
    wanted = json.loads(sys.argv[1])
    if "threads" in wanted:
        json.dump(start_threads(wanted), sys.stdout)
        sys.stdout.write("\n")
        return
    import ffibox
    from ffibox import ctypes
    library = HostileLibrary(ctypes.CDLL(wanted["library"]), ctypes)
    seen = relayed_output(ctypes._default_session().stream)
    stdout_text = wanted.get("stdout_text", "").encode()
    stderr_text = wanted.get("stderr_text", "").encode()
    servers = child_pids(os.getpid(), "ffiboxd")
    results = {
        "client_pid": os.getpid(),
        "server_pids": servers,
        "read": {path: library.read(path)[0] for path in wanted.get("read", [])},
        "create": {path: library.create(path) for path in wanted.get("create", [])},
        "open_memory": {str(pid): library.open_process_memory(pid)
                        for pid in [os.getpid()] + servers},
        "descriptors": library.descriptors(),
        "library_inode": os.stat(wanted["library"]).st_ino,
        # Not the library: this process, ffiboxd's parent and of its user, opening
        # ffiboxd's memory (only root may: ffiboxd is not dumpable).
        "client_opens_server_memory": {str(pid): open_memory_errno(pid) for pid in servers},
        "stdout_write": library.write_fd(1, stdout_text),
        "stderr_write": library.write_fd(2, stderr_text),
    }
    results["output_relayed"] = (wait_for_output(seen, stdout_text)
                                 and wait_for_output(seen, stderr_text))
    with ffibox.connect().session() as session:
        # None from a client or server that does not report them.
        results["jail_layers"] = getattr(session, "jail_layers", None)
        results["waived_jail_layers"] = getattr(session, "waived_jail_layers", None)
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
