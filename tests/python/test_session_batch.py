"""Session.batch: many calls in one request through the low-level Python session, against a
real ffiboxd and the test library."""
import signal

import pytest

import ffibox
from ffibox._stubs import pb
from conftest import TEST_LIB

INT = pb.Type(scalar=pb.INT)


@pytest.fixture
def session(ffibox_client):
    with ffibox_client.session(timeout=5) as s:
        yield s


def resolve(session, library, symbol, params):
    return session.resolve(pb.ResolveFunction(
        library=library, symbol=symbol,
        signature=pb.Signature(result=INT, params=[INT] * params)))


def call(function, *args, value="int_value"):
    return pb.Call(function=function, args=[pb.Value(**{value: arg}) for arg in args])


@pytest.fixture
def lib(session):
    library = session.load_library(TEST_LIB)
    return {name: resolve(session, library, name, params)
            for name, params in [("add_int", 2), ("counter_next", 0), ("crash_null_deref", 0)]}


def test_a_batch_answers_every_call_in_order(session, lib):
    response = session.batch([call(lib["add_int"], i, 100 * i) for i in range(500)])
    assert [r.result.int_value for r in response.batch.results] == [101 * i for i in range(500)]


def test_a_failing_call_stops_the_batch_with_its_index_and_the_results_before_it(session, lib):
    calls = [call(lib["counter_next"]), call(lib["counter_next"]),
             call(lib["add_int"], 2 ** 40, 1, value="uint_value"),  # does not fit an int
             call(lib["counter_next"])]
    with pytest.raises(ffibox.Error) as failed:
        session.batch(calls)
    assert failed.value.code == "INVALID_ARGUMENT"
    assert failed.value.batch_index == 2
    assert [r.result.int_value for r in failed.value.results] == [1, 2]
    # The call after the failing one did not run.
    assert session.call(call(lib["counter_next"])).call.result.int_value == 3


def test_a_malformed_call_refuses_the_whole_batch(session, lib):
    with pytest.raises(ffibox.Error) as refused:
        session.batch([call(lib["counter_next"]), call(lib["add_int"], 1)])
    assert refused.value.code == "INVALID_ARGUMENT"
    assert refused.value.batch_index == 1
    assert refused.value.results == []
    assert session.call(call(lib["counter_next"])).call.result.int_value == 1


def test_a_crash_in_the_middle_is_worker_crashed_and_the_session_goes_on(session, lib):
    with pytest.raises(ffibox.WorkerCrashed) as crash:
        session.batch([call(lib["counter_next"]), call(lib["crash_null_deref"]),
                       call(lib["counter_next"])])
    assert crash.value.signal == signal.SIGSEGV
    assert crash.value.batch_index is None
    response = session.batch([call(lib["add_int"], 40, 2)])
    assert response.batch.results[0].result.int_value == 42
    assert response.generation == 2


def test_the_batch_deadline_ends_a_hang(session, lib):
    library = session.load_library(TEST_LIB)
    sleep = resolve(session, library, "sleep_ms", 1)
    with pytest.raises(ffibox.CallTimeout):
        session.batch([call(lib["add_int"], 1, 2), call(sleep, 10000)], timeout=0.3)
