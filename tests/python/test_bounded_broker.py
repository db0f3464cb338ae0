"""What one session's worker sends cannot take the broker's memory from everyone else.

A hostile library writes straight into its worker's channel to the broker (the shared
memory of the worker-to-broker ring, behind the worker's back): a frame header announcing a
large reply, most of it, then nothing. The broker must drop
that worker after a short stall, hold no more than a bounded number of those bytes across
all sessions, and keep serving a bystander session throughout. Real ffiboxd, real jailed
workers, the test suite's hostile library.
"""
import ctypes
import os
import threading
import time

import grpc
import pytest

import ffibox
from conftest import HOSTILE_LIB, RawSession, Server, forge_empty_blocks, status_kib

MIB = 1 << 20


def broker_rss_mib(server) -> float:
    return status_kib(server.process.pid, "VmRSS") / 1024


class Bystander:
    """Another session calling strlen in a loop. It records its errors and when each answer
    came, so a test can check it was served throughout: no error, no long gap between two
    answers (a broker stalled by the attack shows one as long as the stall), and an answer
    after the attack ended."""

    LONGEST_GAP = 3.0  # seconds; the loop itself pauses 20 ms between calls

    def __init__(self, address):
        self.client = ffibox.connect(address)
        self.libc = self.client.session().CDLL("libc.so.6")
        self.answered, self.errors = [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                assert self.libc.strlen(b"still served") == 12
                self.answered.append(time.monotonic())
            except Exception as error:  # noqa: BLE001 - every failure is what the test checks
                self.errors.append(repr(error))
            time.sleep(0.02)

    def stop_served_throughout(self, since):
        """Waits for one answer after now, stops, and asserts the bystander was served
        from `since` (a time.monotonic() before the attack) to the end."""
        attack_over = time.monotonic()
        deadline = attack_over + 10
        while (not self.errors and not (self.answered and self.answered[-1] > attack_over)
               and time.monotonic() < deadline):
            time.sleep(0.01)
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the bystander's call never returned"
        self.client.close()
        assert self.errors == [], self.errors[:3]
        assert self.answered and self.answered[-1] > attack_over, "no answer after the attack"
        times = [since] + [t for t in self.answered if t > since]
        gap = max(later - earlier for earlier, later in zip(times, times[1:]))
        assert gap < self.LONGEST_GAP, "the bystander waited %.1f s for an answer" % gap


def send_partial_frame(address, announced, sent, stall_seconds, outcome):
    """In a session of its own: the hostile call; records how it ended and when."""
    client = ffibox.connect(address)
    try:
        session = client.session(timeout=120)
        lib = session.CDLL(HOSTILE_LIB)
        lib.hostile_partial_frame.restype = ctypes.c_long
        lib.hostile_partial_frame.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_int]
        started = time.monotonic()
        try:
            lib.hostile_partial_frame(announced, sent, stall_seconds)
            outcome.append(("returned", time.monotonic() - started, ""))
        except ffibox.Error as error:
            outcome.append((error.code, time.monotonic() - started, str(error)))
    finally:
        client.close()


def test_a_stalled_partial_frame_ends_its_worker_and_frees_the_broker():
    server = Server()
    try:
        bystander = Bystander(server.address)
        since = time.monotonic()
        before = broker_rss_mib(server)
        outcome = []
        attacker = threading.Thread(target=send_partial_frame, daemon=True, args=(
            server.address, 200 * MIB, 150 * MIB, 60, outcome))
        attacker.start()
        attacker.join(60)
        assert outcome, "the hostile call never ended"
        code, seconds, message = outcome[0]
        assert code == "WORKER_CRASHED" and "middle of a frame" in message, outcome
        assert seconds < 30, "the stalled worker was dropped only after %.0f s" % seconds
        # Given back when the worker's connection goes, as its session is torn down.
        deadline = time.monotonic() + 10
        while broker_rss_mib(server) >= before + 40 and time.monotonic() < deadline:
            time.sleep(0.1)
        after = broker_rss_mib(server)
        assert after < before + 40, "the broker still holds %.0f MiB after" % (after - before)
        bystander.stop_served_throughout(since)
    finally:
        server.stop()


def test_unfinished_replies_of_all_sessions_stay_under_the_servers_budget():
    server = Server("--max_buffered_reply_bytes=%d" % (64 * MIB))
    try:
        bystander = Bystander(server.address)
        since = time.monotonic()
        before = broker_rss_mib(server)
        outcomes, attackers = [], []
        for _ in range(2):  # 2 x 60 MiB would be 120 MiB held without the budget
            outcome = []
            outcomes.append(outcome)
            attackers.append(threading.Thread(target=send_partial_frame, daemon=True, args=(
                server.address, 100 * MIB, 60 * MIB, 60, outcome)))
        for attacker in attackers:
            attacker.start()
        peak = before
        deadline = time.monotonic() + 60
        while any(a.is_alive() for a in attackers) and time.monotonic() < deadline:
            peak = max(peak, broker_rss_mib(server))
            time.sleep(0.1)
        assert all(outcomes), "a hostile call never ended"
        assert all(o[0][0] == "WORKER_CRASHED" for o in outcomes), outcomes
        assert peak - before < 64 + 40, "the broker held %.0f MiB" % (peak - before)
        bystander.stop_served_throughout(since)
    finally:
        server.stop()


def test_a_reply_that_would_parse_into_far_more_memory_ends_its_worker_unparsed():
    """A hostile library forges its worker's reply to the broker: 48 MiB of empty returned
    blocks, which parsed whole would take the broker GiBs (of every session's memory). The
    broker walks the encoding first, refuses it and ends the worker; a bystander is served
    throughout and the session goes on with a new worker."""
    server = Server()
    try:
        bystander = Bystander(server.address)
        since = time.monotonic()
        client = ffibox.connect(server.address)
        session = client.session(timeout=120)
        lib = session.CDLL(HOSTILE_LIB)
        error, seconds, grown = forge_empty_blocks(lib, False, server.process.pid)
        assert seconds < 15, "refused after %.1f s" % seconds
        assert grown < 200, "the broker grew by %.0f MiB" % grown
        assert error is not None and error.code == "WORKER_CRASHED", error
        assert "holds more ffibox.v1.CallResult.blocks than the request allows" in str(error)
        assert session.CDLL("libc.so.6").strlen(b"next worker") == 11
        client.close()
        bystander.stop_served_throughout(since)
    finally:
        server.stop()


@pytest.mark.parametrize("pause", [0, 0.01], ids=["sent-at-once", "sent-one-by-one"])
def test_a_session_whose_client_stopped_reading_ends_when_the_client_closes(pb, pause):
    # The client asks for 96 reads of 2 MiB and takes none of the answers: gRPC's flow
    # control holds the broker's write of one of them. Then it closes its side and never
    # reads again. The session must still end (its worker killed and reaped, its quota slot
    # back) without waiting for the client to disconnect. Sent one by one, each request finds
    # the stream's thread waiting for it, so that thread answers it itself and is the one
    # held by the write: it cannot see the client close its side.
    server = Server("--max_sessions=1")
    try:
        stalled = RawSession(server.address)
        allocated = stalled.send(alloc_memory=pb.AllocMemory(size=2 * MIB))
        assert not allocated.HasField("error"), allocated.error
        for _ in range(96):
            stalled.requests.put(pb.Request(id=stalled.next_id, read_memory=pb.ReadMemory(
                address=allocated.allocated.address, size=2 * MIB)))
            stalled.next_id += 1
            time.sleep(pause)
        time.sleep(1)
        stalled.requests.put(None)
        closed = time.monotonic()
        deadline = time.monotonic() + 20
        while True:
            other = RawSession(server.address)
            try:
                answered = other.send(ping=pb.Ping()).id != 0
            except Exception:  # noqa: BLE001 - refused while the slot is held
                answered = False
            finally:
                other.close()
            if answered:
                break
            assert time.monotonic() < deadline, "the stalled session never gave its slot back"
            time.sleep(0.2)
        # A second to notice the write waits and read on, five for the client to take it.
        assert time.monotonic() - closed < 10
        stalled.channel.close()
    finally:
        server.stop()


def thread_names(pid):
    names = []
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, task)) as comm:
                names.append(comm.read().strip())
        except FileNotFoundError:
            pass  # the thread ended meanwhile
    return names


def stall_until_read_ahead(pb, session, server):
    """Asks `session` (a RawSession) for reads of 2 MiB, taking no answer, until the broker
    reads ahead for it (its window of answers is full); the reads' ids."""
    allocated = session.send(alloc_memory=pb.AllocMemory(size=2 * MIB))
    assert not allocated.HasField("error"), allocated.error
    sent = []
    deadline = time.monotonic() + 20
    while "ffibox-ahead" not in thread_names(server.process.pid):
        assert time.monotonic() < deadline, "the broker never read ahead"
        sent.append(session.next_id)
        session.requests.put(pb.Request(id=session.next_id, read_memory=pb.ReadMemory(
            address=allocated.allocated.address, size=2 * MIB)))
        session.next_id += 1
        time.sleep(0.05)
    return allocated.allocated.address, sent


def test_a_client_that_sends_on_without_reading_cannot_make_the_broker_hold_its_requests(pb):
    """The client stops taking answers, so the broker reads ahead for the stream's thread held
    by a write; then it sends 200 MiB more requests, keeping its side open. What the broker
    reads ahead is bounded (1 MiB, passed by the last request read); the rest stays with the
    client under gRPC's flow control. Other sessions are served throughout."""
    server = Server()
    stalled = RawSession(server.address)
    try:
        bystander = Bystander(server.address)
        since = time.monotonic()
        address, _ = stall_until_read_ahead(pb, stalled, server)
        time.sleep(0.5)
        before = broker_rss_mib(server)
        for _ in range(100):
            stalled.requests.put(pb.Request(id=stalled.next_id, write_memory=pb.WriteMemory(
                address=address, data=b"\1" * (2 * MIB))))
            stalled.next_id += 1
        time.sleep(3)
        grown = broker_rss_mib(server) - before
        assert not stalled.responses.done(), "the broker ended the stalled session"
        assert grown < 32, "the broker grew by %.0f MiB" % grown
        bystander.stop_served_throughout(since)
    finally:
        stalled.channel.close()
        server.stop()


def test_a_client_that_was_read_ahead_for_and_then_closes_its_session_ends_it_cleanly(pb):
    """The broker reads ahead while the client takes no answers, and the client asks to close
    behind its reads (which abandons those still in flight, docs/protocol.md). Then it takes
    the answers up to the close's and closes its side, as ffibox's clients do. The stream ends
    with OK at once: the read ahead still waiting for a request when the session ended ends
    with the client's close, and nothing is cancelled."""
    server = Server()
    session = RawSession(server.address)
    try:
        _, sent = stall_until_read_ahead(pb, session, server)
        close_id = session.next_id
        session.requests.put(pb.Request(id=close_id, close=pb.CloseSession()))
        time.sleep(0.5)  # the session ends while the read ahead waits for more
        answered = []
        for response in session.responses:
            answered.append(response.id)
            if response.id == close_id:
                assert response.HasField("done"), response
                break
        started = time.monotonic()
        session.requests.put(None)
        answered += [response.id for response in session.responses]
        assert set(answered) <= set(sent) | {close_id} and len(set(answered)) == len(answered)
        assert session.responses.code() == grpc.StatusCode.OK, session.responses.details()
        assert time.monotonic() - started < 3, "the stream ended only after %.1f s" % (
            time.monotonic() - started)
    finally:
        session.channel.close()
        server.stop()


PIDS_ROOT = "/sys/fs/cgroup/pids"
NEEDS_PIDS = pytest.mark.skipif(os.geteuid() != 0 or not os.path.isdir(PIDS_ROOT),
                                reason="needs root and the cgroup v1 pids controller")


@pytest.fixture
def pids_group():
    """A pids cgroup of the test's own (its path), removed after it."""
    group = os.path.join(PIDS_ROOT, "ffibox-test-%d" % os.getpid())
    os.mkdir(group)
    yield group
    for directory, _, _ in sorted(os.walk(group), key=lambda entry: -len(entry[0])):
        os.rmdir(directory)


@NEEDS_PIDS
def test_a_task_limit_reached_while_serving_fails_sessions_not_the_broker(pids_group):
    # ffiboxd under a task limit (systemd's TasksMax, a container's pids limit): its
    # workers' threads count against it too. A thread the broker could not start (for a
    # worker's reader, its descriptor watch, a same-host door) threw, and the uncaught
    # exception ended the broker and every session (3 runs in 4 here, from the pool's
    # refill); and gRPC's shutdown then could wait for ever.
    server = None
    try:
        server, client, sessions, refused = _serve_until_the_task_limit(pids_group)
        assert server.process.poll() is None, "the broker ended"
        # Typed, as RESOURCE_EXHAUSTED; not gRPC's UNKNOWN for an exception in a handler,
        # nor WORKER_CRASHED "while running dlopen" for a worker that could not start its
        # own thread (it ends before it says it runs, and ffiboxd waits for that).
        assert not any("Unexpected error in RPC handling" in str(error)
                       for error in refused), refused
        assert all(error.code == "RESOURCE_EXHAUSTED" for error in refused), refused
        for session in sessions:
            session.close()
        with open(os.path.join(pids_group, "pids.max"), "w") as limit:
            limit.write("max")
        with client.session() as session:  # served again once the tasks are back
            assert session.CDLL("libc.so.6").strlen(b"again") == 5
        client.close()
        server.process.terminate()
        server.process.wait(timeout=30)  # a shutdown that cannot finish ends in 20 s
    finally:
        if server is not None:
            server.stop()


def _serve_until_the_task_limit(group):
    """A server in the pids cgroup `group` with room for 24 more tasks, and a client's
    sessions opened until three were refused: (server, client, sessions, refusals)."""
    server = Server(wrapper=[
        "sh", "-c", 'echo $$ > %s/cgroup.procs && exec "$@"' % group, "sh"])
    with open(os.path.join(group, "pids.current")) as current:
        started = int(current.read())
    with open(os.path.join(group, "pids.max"), "w") as limit:
        limit.write(str(started + 24))
    client = ffibox.connect(server.address)
    sessions, refused = [], []
    for _ in range(40):
        try:
            session = client.session()
            assert session.CDLL("libc.so.6").strlen(b"four") == 4
            sessions.append(session)
        except ffibox.Error as error:
            refused.append(error)
            if len(refused) >= 3:
                break
    assert refused, "the limit was never reached"
    return server, client, sessions, refused


@NEEDS_PIDS
def test_a_shutdown_at_the_task_limit_ends_cleanly(pids_group):
    # SIGTERM while the task limit is reached (the Python client's private server is stopped
    # so): the shutdown started a thread of its own, which threw, and ffiboxd aborted,
    # leaving its socket files behind.
    server = None
    try:
        server, _, _, _ = _serve_until_the_task_limit(pids_group)
        socket_path = server.address[len("unix:"):]
        assert os.path.exists(socket_path)
        server.process.terminate()
        code = server.process.wait(timeout=30)
        assert code in (0, 1), "ffiboxd ended with %d" % code  # 1: the shutdown watchdog
        assert not os.path.exists(socket_path)
        assert not os.path.exists(socket_path + "-local")
    finally:
        if server is not None:
            server.stop()
