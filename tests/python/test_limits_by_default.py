"""Limits that hold with the default configuration: a library cannot take the host's pids,
its memory, or a CPU while its session is idle, and its session is told when a limit bites.

A real ffiboxd with no limit flags, real jailed workers in their own cgroups, and the test
library's functions that use resources on purpose (tests/testlibs/limits.c).
"""
import ctypes  # ffibox uses the stdlib's data types
import gc
import time

import pytest

import ffibox
from ffibox import ctypes as ffibox_ctypes
from conftest import TEST_LIB, Server
from ffibox._stubs import pb


@pytest.fixture
def default_server():
    s = Server()  # no limit flags: the defaults are what is tested
    yield s
    s.stop()


def open_library(client, **options):
    session = client.session(**options)
    lib = session.CDLL(TEST_LIB)
    lib.start_sleeping_threads.argtypes = [ctypes.c_int]
    lib.allocate_mib.argtypes = [ctypes.c_int]
    lib.process_cpu_ms.restype = ctypes.c_long
    return session, lib


def limit_events(session):
    return [event.error.message for event in session.stream.events
            if event.kind == pb.SessionEvent.LIMIT_REACHED]


def test_the_session_reports_its_default_limits(default_server):
    client = ffibox.connect(default_server.address)
    session = client.session()
    assert "cgroup" in session.jail_layers
    assert session.worker_pids_max == 256
    assert session.idle_cpu_percent == 10
    assert client.session(idle_cpu_percent=60).idle_cpu_percent == 60
    with pytest.raises(ffibox.Error) as refused:
        client.session(idle_cpu_percent=101)
    assert refused.value.code == "INVALID_ARGUMENT"
    client.close()


def test_threads_are_capped_per_worker_and_the_session_is_told(default_server):
    client = ffibox.connect(default_server.address)
    greedy, lib = open_library(client)
    started = lib.start_sleeping_threads(3000)  # they outlive the call
    assert 200 <= started < 256, started
    # The event arrives before the reply of the call during which the cap bit.
    assert any("threads and processes" in message for message in limit_events(greedy)), \
        greedy.stream.events
    # The cap is the worker's, not the host's or the server's: another session still gets
    # its own threads and its calls.
    bystander, other = open_library(client)
    assert other.start_sleeping_threads(50) == 50
    assert other.allocate_mib(8) == 1
    client.close()


def test_a_limit_hit_on_every_call_is_told_every_time_but_logged_a_bounded_number_of_times(
        tmp_path):
    """A library at its thread cap that tries one more thread on each call: the session gets
    a LIMIT_REACHED event for each hit, the operator's log a few lines a minute for it (it
    had one per call, without bound), and another session's hit is still logged (one
    budget for every session let the noisy one crowd it out)."""
    log_path = tmp_path / "ffiboxd.log"
    with open(log_path, "w") as log:
        server = Server(stderr=log)
    try:
        client = ffibox.connect(server.address)
        session, lib = open_library(client)
        assert lib.start_sleeping_threads(3000) < 256
        for _ in range(100):
            assert lib.start_sleeping_threads(1) == 0
        hits = [m for m in limit_events(session) if "threads and processes" in m]
        assert len(hits) >= 60, len(hits)  # (the session keeps its latest events)
        quiet, other = open_library(client)
        assert other.start_sleeping_threads(3000) < 256
        assert any("threads and processes" in m for m in limit_events(quiet))
        client.close()
    finally:
        server.stop()
    lines = [line for line in log_path.read_text().splitlines() if "limit reached" in line]
    noisy = [line for line in lines if "session %s:" % session.session_id in line]
    assert 1 <= len(noisy) <= 6, noisy
    assert any("session %s:" % quiet.session_id in line for line in lines), lines


def test_memory_is_capped_by_default(default_server):
    client = ffibox.connect(default_server.address)
    _, lib = open_library(client)
    assert lib.allocate_mib(64) == 1
    assert lib.allocate_mib(5000) == 0  # past the default 4 GiB: malloc says no
    assert lib.allocate_mib(64) == 1    # and the worker keeps serving
    client.close()


def cpu_used_while_idle(lib, seconds):
    before = lib.process_cpu_ms()
    time.sleep(seconds)  # no call in flight
    return lib.process_cpu_ms() - before


def test_a_library_thread_sending_events_while_idle_is_throttled_all_the_same(default_server):
    # The throttle comes back a few milliseconds after the session's last request ends; what
    # the worker sends meanwhile (here a CALLBACK_ERROR event every 2 ms, from a thread that
    # calls a freed callback and spins between the calls) must not hold it off.
    client = ffibox.connect(default_server.address)
    session, lib = open_library(client)
    handler_type = ffibox_ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)
    handler = handler_type(lambda x: x)
    lib.register_handler.argtypes = [handler_type]
    lib.register_handler(handler)
    del handler
    gc.collect()
    assert lib.add_int(2, 3) == 5  # (the freed callback's release goes first)
    assert lib.start_spinner_firing_handler(2) == 1
    used = cpu_used_while_idle(lib, 2.0)
    assert any(e.kind == pb.SessionEvent.CALLBACK_ERROR for e in session.stream.events)
    # 10 % of one CPU for 2 s is 200 ms; unthrottled it would be about 2000.
    assert used < 700, "an idle worker sending events used %d ms of CPU in 2 s" % used
    client.close()


def cpu_share_while_idle(lib, wanted_ms, most_seconds=15):
    """The CPU time `lib`'s worker used over about `wanted_ms` of it (sampled every 0.5 s, idle
    between the samples, at most `most_seconds`), as a share of the wall time that took."""
    before = lib.process_cpu_ms()
    started = time.monotonic()
    used = 0
    while used < wanted_ms and time.monotonic() < started + most_seconds:
        time.sleep(0.5)
        used = lib.process_cpu_ms() - before
    return used / ((time.monotonic() - started) * 1000)


def test_a_worker_serving_a_same_host_channel_is_never_throttled(default_server):
    # A client that loads and calls through the broker, then opens a same-host channel: the
    # throttle that the broker's last request would have put back a few milliseconds later
    # stays off, as for a channel opened first (docs/configuration.md, idle_cpu_percent).
    client = ffibox.connect(default_server.address)
    session, lib = open_library(client, same_host=False)
    lib.process_cpu_ms()  # through the broker: its end starts the idle time
    session.stream.enable_local(call_timeout=10.0)
    assert session.stream.local_enabled
    assert lib.start_background_spinner() == 1  # on the channel, as what follows
    share = cpu_share_while_idle(lib, 1000)
    # Past what the 10 % throttle lets through at most, whatever the host's load.
    assert share > 0.12, "a channel's worker got %.0f %% of a CPU" % (share * 100)
    client.close()


def test_a_thread_left_spinning_gets_a_small_share_while_the_session_is_idle(default_server):
    client = ffibox.connect(default_server.address)
    _, throttled = open_library(client)
    assert throttled.start_background_spinner() == 1
    used = cpu_used_while_idle(throttled, 2.0)
    # 10 % of one CPU for 2 s is 200 ms; unthrottled it would be about 2000.
    assert used < 700, "an idle worker used %d ms of CPU in 2 s" % used
    # A session that runs background threads on purpose asks for more: its spinner gets far
    # more than the 10 % throttle would allow. How much depends on what else the host runs,
    # so it is sampled until it has had a second, and compared with the time that took.
    _, generous = open_library(client, idle_cpu_percent=100)
    assert generous.start_background_spinner() == 1
    share = cpu_share_while_idle(generous, 1000)
    # Past what the 10 % throttle lets through at most, whatever the host's load (a busy
    # host gave it 15 % of a CPU).
    assert share > 0.12, "a session allowed a whole CPU got %.0f %% of one" % (share * 100)
    client.close()
