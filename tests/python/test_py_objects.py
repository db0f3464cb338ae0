"""A Python object passed to a library as `py_object` comes back as that object, as with
ctypes: opaque user data the library hands to a callback (`qsort_r`'s context,
`dl_iterate_phdr`'s data, a registration kept across calls), a `py_object` result. The
worker holds a token, never an address of this process (ffibox._py_objects); a value that is
no token of the session's, or one of an object that is gone, is ValueError where ctypes would
read arbitrary memory. Each test runs over gRPC and on the same-host channel, against a real
ffiboxd and jailed worker; where it can, it checks the stdlib gives the same in-process."""
import ctypes
import gc
import threading
import time

import pytest

from conftest import TEST_LIB, run_script
from ffibox import _py_objects
from ffibox import ctypes as ct


@pytest.fixture(params=["grpc", "same_host"])
def session(request, module_client):
    with module_client.session(same_host=request.param == "same_host") as s:
        assert s.stream.local_enabled == (request.param == "same_host")
        yield s


def sort_with_context(module, libc, values):
    """qsort_r of `values` whose comparator records each comparison in its context list."""
    CMP = module.CFUNCTYPE(module.c_int, module.POINTER(module.c_int),
                           module.POINTER(module.c_int), module.py_object)
    libc.qsort_r.argtypes = [module.c_void_p, module.c_size_t, module.c_size_t, CMP,
                             module.py_object]
    libc.qsort_r.restype = None
    seen = []
    contexts = set()

    def compare(a, b, context):
        contexts.add(id(context))
        context.append((a[0], b[0]))
        return a[0] - b[0]

    array = (module.c_int * len(values))(*values)
    libc.qsort_r(array, len(values), 4, CMP(compare), seen)
    return list(array), seen, contexts == {id(seen)}


def test_qsort_r_hands_the_comparator_the_context_object(session):
    values = [5, 3, 9, 1, 7, 2, 8]
    got = sort_with_context(ct, session.CDLL("libc.so.6"), values)
    assert got == sort_with_context(ctypes, ctypes.CDLL("libc.so.6"), values)
    assert got[0] == sorted(values) and got[1] and got[2]


def test_dl_iterate_phdr_hands_each_visit_the_data_object(session):
    libc = session.CDLL("libc.so.6")
    VISIT = ct.CFUNCTYPE(ct.c_int, ct.c_void_p, ct.c_size_t, ct.py_object)
    libc.dl_iterate_phdr.argtypes = [VISIT, ct.py_object]
    found = {"visits": 0}

    def visit(info, size, data):
        data["visits"] += 1
        return 0

    assert libc.dl_iterate_phdr(VISIT(visit), found) == 0
    assert found["visits"] >= 3  # the worker, libc, ld.so at least


def test_a_py_object_result_is_the_object_passed(session):
    lib = session.CDLL(TEST_LIB)
    lib.ptr_offset.argtypes = [ct.py_object, ct.c_long]
    lib.ptr_offset.restype = ct.py_object
    for obj in ({"a": 1}, [1, 2], object(), None, 12345, "text", ct.c_int(4)):
        assert lib.ptr_offset(obj, 0) is obj
    # A py_object instance passes the object it holds, as in ctypes.
    held = [7]
    assert lib.ptr_offset(ct.py_object(held), 0) is held


def test_the_worker_gets_a_token_not_an_address(session):
    lib = session.CDLL(TEST_LIB)
    lib.ptr_offset.argtypes = [ct.py_object, ct.c_long]
    lib.ptr_offset.restype = ct.c_void_p
    first, second = [1], [2]
    token = lib.ptr_offset(first, 0)
    assert token == lib.ptr_offset(first, 0)  # the same object: the same token
    assert token != lib.ptr_offset(second, 0)
    assert token != id(first)
    # Neither a canonical user nor kernel address: a library that dereferences it faults.
    assert (1 << 47) <= token < (1 << 64) - (1 << 47)
    # py_object() holds NULL, which the library gets as NULL.
    assert lib.ptr_offset(ct.py_object(), 0) is None


def test_tokens_are_drawn_at_random_for_each_session(session, module_client):
    def first_token(s):
        lib = s.CDLL(TEST_LIB)
        lib.ptr_offset.argtypes = [ct.py_object, ct.c_long]
        lib.ptr_offset.restype = ct.c_void_p
        return lib.ptr_offset([], 0)

    with module_client.session() as other:
        tokens = {first_token(session), first_token(other)}
    assert len(tokens) == 2


def test_a_value_that_is_no_token_is_value_error(session):
    lib = session.CDLL(TEST_LIB)
    lib.ptr_offset.argtypes = [ct.py_object, ct.c_long]
    lib.ptr_offset.restype = ct.py_object
    obj = [1]
    with pytest.raises(ValueError, match="no object this session passed"):
        lib.ptr_offset(obj, 16)
    with pytest.raises(ValueError, match="PyObject is NULL"):
        lib.ptr_offset(ct.py_object(), 0)
    # Nor is another session's token.
    with session.client.session() as other:
        other_lib = other.CDLL(TEST_LIB)
        other_lib.ptr_offset.argtypes = [ct.c_void_p, ct.c_long]
        other_lib.ptr_offset.restype = ct.py_object
        lib.ptr_offset.restype = ct.c_void_p
        with pytest.raises(ValueError, match="no object this session passed"):
            other_lib.ptr_offset(lib.ptr_offset(obj, 0), 0)
    assert lib.ptr_offset(obj, 0)  # the session goes on


def test_a_collected_object_is_value_error_and_one_without_weak_references_is_kept(
        session, monkeypatch):
    lib = session.CDLL(TEST_LIB)
    lib.ptr_offset.argtypes = [ct.py_object, ct.c_long]
    lib.ptr_offset.restype = ct.c_void_p
    back = session.CDLL(TEST_LIB).ptr_offset
    back.argtypes = [ct.c_void_p, ct.c_long]
    back.restype = ct.py_object

    class Plugin:
        pass

    plugin = Plugin()
    token = lib.ptr_offset(plugin, 0)
    assert back(token, 0) is plugin
    del plugin
    gc.collect()
    with pytest.raises(ValueError, match="gone"):
        back(token, 0)
    # A list takes no weak reference: kept while fewer than KEPT others were passed since.
    monkeypatch.setattr(_py_objects, "KEPT", 4)
    kept = lib.ptr_offset([1, 2, 3], 0)
    assert back(kept, 0) == [1, 2, 3]
    for i in range(4):
        lib.ptr_offset([i], 0)
    with pytest.raises(ValueError, match="gone"):
        back(kept, 0)
    # One that something else holds too stays, however many pass after it.
    registration = {"handlers": []}
    held = lib.ptr_offset(registration, 0)
    for i in range(12):
        lib.ptr_offset([i], 0)
    assert back(held, 0) is registration


def test_an_object_let_go_is_finalized_outside_the_table(session, monkeypatch):
    # Its finalizer calls the library while another thread's call waits on a callback that
    # returns a py_object: both go on (the table's lock is not held while it runs; held, the
    # callback's result could not get its token, and the two calls waited for each other
    # until the deadline). The finalizer's call waits for the call in flight, which waits
    # for its callback: the callback gives the finalizer two seconds, then returns.
    # Held, in order: the list, pass_through's argument 1 (an int takes no weak reference)
    # and the tuple given below, which lets the list go. Nothing is given after it: another
    # could let the callback's result go before pass_through returned it.
    monkeypatch.setattr(_py_objects, "KEPT", 2)
    lib = session.CDLL(TEST_LIB)
    F = ct.CFUNCTYPE(ct.py_object, ct.py_object)
    lib.pass_through.argtypes = [F, ct.py_object]
    lib.pass_through.restype = ct.py_object
    lib.add_int.argtypes = [ct.c_int, ct.c_int]
    give = session.CDLL(TEST_LIB).ptr_offset
    give.argtypes = [ct.py_object, ct.c_long]
    in_callback, finalized = threading.Event(), []

    class Resource:
        def __del__(self):
            finalized.append(lib.add_int(2, 3))

    give([Resource()], 0)  # kept by the table alone
    results = []

    def wait_then_wrap(x):
        in_callback.set()
        deadline = time.monotonic() + 2
        while not finalized and time.monotonic() < deadline:
            time.sleep(0.01)
        return (x,)

    callback = F(wait_then_wrap)
    caller = threading.Thread(target=lambda: results.append(lib.pass_through(callback, 1)))
    caller.start()
    assert in_callback.wait(10)
    give((1,), 0)  # lets the list go
    caller.join(20)
    assert finalized == [5] and results == [(1,)]


def test_a_callbacks_new_object_result_reaches_the_caller(session):
    lib = session.CDLL(TEST_LIB)
    F = ct.CFUNCTYPE(ct.py_object, ct.py_object)
    lib.pass_through.argtypes = [F, ct.py_object]
    lib.pass_through.restype = ct.py_object

    class Box:
        def __init__(self, x):
            self.x = x

    # ctypes gives native code a reference of its own to what a callback returns.
    result = lib.pass_through(F(lambda x: Box(x)), 41)
    assert type(result) is Box and result.x == 41


def test_a_registration_keeps_its_data_across_calls(session):
    lib = session.CDLL(TEST_LIB)
    HANDLER = ct.CFUNCTYPE(ct.c_int, ct.c_int, ct.py_object)
    lib.register_handler_with.argtypes = [HANDLER, ct.py_object]
    lib.register_handler_with.restype = None
    lib.fire_handler_with.argtypes = [ct.c_int]

    class Counter:
        def __init__(self):
            self.calls = []

    counter = Counter()

    def handler(x, data):
        data.calls.append(x)
        return x * 2

    callback = HANDLER(handler)
    lib.register_handler_with(callback, counter)
    assert [lib.fire_handler_with(x) for x in (1, 2, 3)] == [2, 4, 6]
    assert counter.calls == [1, 2, 3]


def test_a_callback_takes_and_returns_py_objects(session):
    lib = session.CDLL(TEST_LIB)
    F = ct.CFUNCTYPE(ct.py_object, ct.py_object)
    lib.pass_through.argtypes = [F, ct.py_object]
    lib.pass_through.restype = ct.py_object
    made = []

    def wrap(x):
        made.append(("wrapped", x))
        return made[-1]

    key = ("key",)
    result = lib.pass_through(F(wrap), key)
    assert result is made[0] and result[1] is key
    # A callback's own NULL result comes back as ctypes' NULL py_object error.
    with pytest.raises(ValueError, match="PyObject is NULL"):
        lib.pass_through(F(lambda x: ct.py_object()), key)


def test_a_py_object_cannot_be_a_field_or_a_pointee(session):
    lib = session.CDLL(TEST_LIB)

    class Holder(ct.Structure):
        _fields_ = [("obj", ct.py_object)]

    lib.ptr_offset.argtypes = [ct.POINTER(Holder), ct.c_long]
    with pytest.raises(TypeError, match="cannot cross a process boundary"):
        lib.ptr_offset(Holder(), 0)
    lib.ptr_offset.argtypes = [ct.POINTER(ct.py_object), ct.c_long]
    with pytest.raises(TypeError, match="cannot cross a process boundary"):
        lib.ptr_offset(ct.byref(ct.py_object(1)), 0)


READ_AS_PY_OBJECT = """
import os, sys
os.environ["FFIBOX_ADDRESS"] = sys.argv[1]
from ffibox import ctypes as ct
libc = ct.CDLL("libc.so.6")
libc.calloc.restype = ct.POINTER(ct.c_uint64)
libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
libc.posix_memalign.argtypes = [ct.POINTER(ct.POINTER(ct.c_uint64)), ct.c_size_t, ct.c_size_t]
words = libc.calloc(2000, 8)                      # a RemotePointer
out = ct.POINTER(ct.c_uint64)()
libc.posix_memalign(ct.byref(out), 16, 16000)     # out points into an image
libc.memset(words, 0x41, 16000)
libc.memset(out, 0x41, 16000)
class Holder(ct.Structure):
    _fields_ = [("n", ct.c_uint64), ("obj", ct.py_object)]
for name, read in (("remote", lambda: ct.cast(words, ct.POINTER(ct.py_object))[0]),
                   ("image", lambda: ct.cast(out, ct.POINTER(ct.py_object))[0]),
                   ("past the image", lambda: ct.cast(out, ct.POINTER(ct.py_object))[1000]),
                   ("a field", lambda: ct.cast(out, ct.POINTER(Holder))[500].obj),
                   ("void*", lambda: ct.cast(ct.cast(out, ct.c_void_p),
                                             ct.POINTER(ct.py_object))[0]),
                   ("byref", lambda: ct.cast(ct.byref(out.contents),
                                             ct.POINTER(ct.py_object))[0])):
    try:
        read()
        print(name, "read")
    except TypeError as error:
        print(name, "holds a py_object" in str(error))
print(libc.abs(-3))
"""


def test_a_py_object_is_never_read_from_the_library_memory(shared_server):
    # The library's bytes read as a py_object would be a PyObject* of this process (a crash):
    # each way to get there through cast() is a TypeError, and the caller goes on.
    result = run_script(READ_AS_PY_OBJECT, shared_server.address)
    assert result.returncode == 0, "exit %d: %s" % (result.returncode, result.stderr[-2000:])
    assert result.stdout.split("\n")[:7] == [
        "remote True", "image True", "past the image True", "a field True", "void* True",
        "byref True", "3"], result.stdout


def test_a_token_that_comes_as_a_void_pointer_casts_to_its_object(session):
    # shapely's STRtree: the user data arrives as a void* and is cast to py_object.
    libc = session.CDLL("libc.so.6")
    CMP = ct.CFUNCTYPE(ct.c_int, ct.c_void_p, ct.c_void_p, ct.c_void_p)
    libc.qsort_r.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_size_t, CMP, ct.py_object]
    libc.qsort_r.restype = None
    context, seen = {"k": 1}, []

    def compare(a, b, data):
        seen.append(ct.cast(data, ct.py_object).value)
        return 0

    callback = CMP(compare)
    libc.qsort_r((ct.c_int * 2)(2, 1), 2, 4, callback, context)
    assert seen and all(item is context for item in seen)
