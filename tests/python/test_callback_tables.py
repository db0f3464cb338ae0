"""Tables of callbacks passed by pointer: a structure whose function pointer fields hold
callbacks (yajl's parser callbacks, glob's GLOB_ALTDIRFUNC, a plugin's interface), called
during the call or kept by the library for later calls. Each test runs under the stdlib's
ctypes in-process and under ffibox.ctypes, with the same expectations."""
import pytest

import ffibox
from conftest import TEST_LIB, Server


def ops_type(ct):
    START = ct.CFUNCTYPE(ct.c_int, ct.c_int)
    COMBINE = ct.CFUNCTYPE(ct.c_int, ct.c_int, ct.c_int)

    class Ops(ct.Structure):
        _fields_ = [("start", START), ("combine", COMBINE), ("tag", ct.c_int)]

    return Ops, START, COMBINE


def declared(ct, testlib):
    Ops, START, COMBINE = ops_type(ct)
    for name in ("apply_ops", "keep_ops", "set_start_to_negate"):
        getattr(testlib, name).argtypes = [ct.POINTER(Ops)]
    testlib.apply_ops.argtypes = [ct.POINTER(Ops), ct.c_int]
    testlib.run_kept_ops.argtypes = [ct.c_int]
    return Ops, START, COMBINE


def test_a_table_of_callbacks_passed_by_pointer_is_called_and_left_as_it_was(ct, testlib):
    Ops, START, COMBINE = declared(ct, testlib)
    start, combine = START(lambda x: 10 * x), COMBINE(lambda a, b: a + b)
    ops = Ops(start, combine, 3)
    assert testlib.apply_ops(ct.byref(ops), 5) == 53
    assert testlib.apply_ops(ct.pointer(ops), 6) == 63
    # The fields hold the callbacks' own code, as before the calls.
    assert ct.cast(ops.start, ct.c_void_p).value == ct.cast(start, ct.c_void_p).value
    assert ct.cast(ops.combine, ct.c_void_p).value == ct.cast(combine, ct.c_void_p).value
    assert ops.start(2) == 20 and ops.combine(2, 3) == 5
    assert testlib.apply_ops(ct.byref(Ops(combine=combine, tag=3)), 5) == -1


def test_a_table_the_library_keeps_is_called_in_later_calls(ct, testlib):
    Ops, START, COMBINE = declared(ct, testlib)
    calls = []

    def start(x):
        calls.append(x)
        return x + 1

    ops = Ops(START(start), COMBINE(lambda a, b: a * b), 2)
    testlib.keep_ops(ct.byref(ops))
    assert [testlib.run_kept_ops(x) for x in (1, 2, 3)] == [4, 6, 8]
    assert calls == [1, 2, 3]
    # Passed again (with a new callback in a field), the kept table is the one called.
    ops.combine = COMBINE(lambda a, b: a - b)
    assert testlib.apply_ops(ct.byref(ops), 10) == 9
    assert testlib.run_kept_ops(10) == 9
    testlib.keep_ops(None)
    assert testlib.run_kept_ops(1) == -2


def test_a_field_the_library_sets_holds_the_librarys_function(ct, testlib):
    Ops, START, COMBINE = declared(ct, testlib)
    ops = Ops(START(lambda x: 10 * x), COMBINE(lambda a, b: a + b), 3)
    testlib.set_start_to_negate(ct.byref(ops))
    assert ops.start(4) == -4  # the library's own function now, called where it lives
    assert testlib.apply_ops(ct.byref(ops), 5) == -2
    assert ops.combine(1, 2) == 3


def test_callbacks_kept_only_by_tables_are_freed_with_them():
    # ctypes keeps a callback's code, not its CFUNCTYPE instance, in a structure built from
    # temporaries: the structure keeps the instance too, and lets it go with itself, so the
    # worker's callback is freed then. A server that admits 64 callbacks per session: 80
    # tables of two get through only so.
    import gc
    from ffibox import ctypes as fct
    small = Server("--max_callbacks=64")
    try:
        client = ffibox.connect(small.address)
        session = client.session()
        testlib = session.CDLL(TEST_LIB)
        Ops, START, COMBINE = declared(fct, testlib)
        for i in range(80):
            ops = Ops(START(lambda x: x + 1), COMBINE(lambda a, b, i=i: a + b + i), 0)
            gc.collect()  # the temporaries' instances, were they not kept
            assert testlib.apply_ops(fct.byref(ops), 1) == 2 + i
            del ops
        gc.collect()
        assert len(session._callbacks) < 64, len(session._callbacks)
        session.close()
        client.close()
    finally:
        small.stop()


def test_an_object_holding_its_own_callback_is_collected_and_its_callback_freed():
    # `self._compare = CMP(self.compare)` (unicorn's engines and hooks): a cycle the
    # collector frees, as with ctypes. The session's table of handlers kept the function,
    # so no such object was ever freed (nor what its finalizer closes), and 80 of them on a
    # server that admits 64 callbacks per session got through only once they are.
    import gc
    import weakref
    from ffibox import ctypes as fct
    small = Server("--max_callbacks=64")
    try:
        client = ffibox.connect(small.address)
        session = client.session()
        libc = session.CDLL("libc.so.6")
        CMP = fct.CFUNCTYPE(fct.c_int, fct.POINTER(fct.c_int), fct.POINTER(fct.c_int))

        class Sorter:
            def __init__(self, sign):
                self.sign = sign
                self._compare = CMP(self.compare)

            def compare(self, a, b):
                return self.sign * (a[0] - b[0])

            def sort(self, values):
                array = (fct.c_int * len(values))(*values)
                libc.qsort(array, len(values), fct.sizeof(fct.c_int), self._compare)
                return list(array)

        for i in range(80):
            sorter = Sorter(1 if i % 2 else -1)
            assert sorter.sort([3, 1, 2]) == ([1, 2, 3] if i % 2 else [3, 2, 1])
            gone = weakref.ref(sorter)
            del sorter
            gc.collect()
            assert gone() is None, "the object holding its callback was kept"
        assert len(session._callbacks) < 64, len(session._callbacks)
        session.close()
        client.close()
    finally:
        small.stop()


def test_a_callback_that_stores_a_pointer_to_its_own_array_for_the_library(ct, testlib):
    # libspatialindex's stream loading (rtree's Index(generator)): the callback stores a
    # pointer to an array it keeps into the library's double**, and the library reads the
    # array after the callback returned.
    PROVIDE = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.POINTER(ct.c_double)),
                           ct.POINTER(ct.c_int))
    kept = (ct.c_double * 3)(1.5, 2.5, 4.0)

    def provide(out, count):
        out[0] = ct.cast(kept, ct.POINTER(ct.c_double))
        count[0] = 3
        return 0

    testlib.sum_provided.restype = ct.c_double
    testlib.sum_provided.argtypes = [PROVIDE]
    callback = PROVIDE(provide)
    assert testlib.sum_provided(callback) == 8.0
    kept[2] = 10.0  # stored again by the next invocation, with what it holds then
    assert testlib.sum_provided(callback) == 14.0


def test_a_table_of_callbacks_across_worker_restarts(ffibox_client):
    # Each restarted worker makes the callbacks' closures again, elsewhere: the table still
    # reaches them, and its fields hold the callbacks' own code after each call.
    from ffibox import ctypes as fct
    session = ffibox_client.session()
    testlib = session.CDLL(TEST_LIB)
    Ops, START, COMBINE = declared(fct, testlib)
    start, combine = START(lambda x: 10 * x), COMBINE(lambda a, b: a + b)
    ops = Ops(start, combine, 3)
    crash = testlib.crash_null_deref
    crash.restype = fct.c_int
    for round in range(3):
        assert testlib.apply_ops(fct.byref(ops), round) == 10 * round + 3
        assert fct.cast(ops.start, fct.c_void_p).value == fct.cast(start, fct.c_void_p).value
        assert fct.cast(ops.combine, fct.c_void_p).value == \
            fct.cast(combine, fct.c_void_p).value
        with pytest.raises(ffibox.WorkerCrashed):
            crash()
    session.close()
