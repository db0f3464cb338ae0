"""The parts of the ctypes surface real bindings rely on besides calls: names they import,
callback lifetime and prototypes, paramflags, and the stdlib's exception types."""
import gc
import math
import pickle
import textwrap
import threading
import time
import types

import pytest

import ffibox

from conftest import TEST_LIB, Server, run_script


@pytest.fixture
def ct(server, monkeypatch):
    monkeypatch.setenv("FFIBOX_ADDRESS", server.address)
    from ffibox import _default, ctypes
    monkeypatch.setattr(_default, "_session", None)
    yield ctypes
    if _default.opened_session() is not None:
        _default.opened_session().close()


def test_names_bindings_import_exist(ct):
    for name in ("py_object", "BigEndianUnion", "LittleEndianUnion", "_CFuncPtr",
                 "_FUNCFLAG_CDECL", "_FUNCFLAG_USE_ERRNO", "_FUNCFLAG_USE_LASTERROR",
                 "_pointer_type_cache"):
        assert hasattr(ct, name), name
    import ffibox.ctypes._endian as endian
    import ffibox.ctypes.util as util
    assert endian.BigEndianStructure is ct.BigEndianStructure
    assert callable(util.find_library) and callable(util._findSoname_ldconfig)
    # py_object works locally...
    assert ct.py_object([1, 2]).value == [1, 2]
    with pytest.raises(AttributeError):
        ct.PyDLL


def test_pythonapi_functions_can_be_named_and_typed_but_not_called(ct):
    """Bindings name pythonapi functions at import (python3-vlc's PyFile_FromFd,
    pycryptodome's PyObject_GetBuffer): that works, and a call says why it cannot."""
    from_fd = ct.pythonapi.PyFile_FromFd
    from_fd.restype = ct.py_object
    from_fd.argtypes = [ct.c_int, ct.c_char_p]
    assert ct.pythonapi.PyFile_FromFd is from_fd
    with pytest.raises(NotImplementedError, match="pythonapi.PyFile_FromFd"):
        from_fd(1, b"r")
    # A binding that imports it and never calls it works on.
    assert ct.CDLL("libc.so.6").strlen(b"hello") == 5


def test_pymem_free_of_library_memory_frees_it_in_the_worker(ct):
    # python3-augeas frees aug_match's results with pythonapi.PyMem_Free: every match()
    # raised NotImplementedError.
    libc = ct.CDLL("libc.so.6")
    libc.strdup.restype, libc.strdup.argtypes = ct.c_void_p, [ct.c_char_p]
    made = libc.strdup(b"a library string")
    ct.pythonapi.PyMem_Free.argtypes = [ct.c_void_p]
    assert ct.pythonapi.PyMem_Free(ct.c_void_p(made)) is None
    assert libc.strdup(b"a library string") == made  # glibc hands the freed chunk back
    assert ct.pythonapi.PyMem_Free(None) is None


def test_pymem_free_of_an_image_of_library_memory_frees_the_workers():
    # augeas frees the array aug_match filled its POINTER(c_void_p) with: the pointer holds
    # an image of that array, whose local address CPython's PyMem_Free got (memory it never
    # allocated): the caller's heap was corrupted, and it crashed at exit.
    script = textwrap.dedent("""
        import gc
        from ffibox import ctypes as ct
        libc = ct.CDLL("libc.so.6")
        libc.posix_memalign.argtypes = [ct.POINTER(ct.POINTER(ct.c_void_p)), ct.c_size_t,
                                        ct.c_size_t]
        for _ in range(50):
            array = ct.POINTER(ct.c_void_p)()
            assert libc.posix_memalign(ct.byref(array), 16, 64) == 0
            assert array[0] is None or isinstance(array[0], int)
            ct.pythonapi.PyMem_Free(array)
        gc.collect()
        print("freed")
    """)
    run = run_script(script)
    assert (run.returncode, run.stdout.strip()) == (0, "freed"), run.stderr[-2000:]


def test_a_callback_made_by_the_stdlib_is_refused_saying_how_to_make_one(ct):
    """numba's `cfunc(...).ctypes` is the stdlib's callback: given where a binding declared
    ffibox.ctypes' CFUNCTYPE, the error read "expected CFunctionType instance instead of
    CFunctionType"."""
    import ctypes as stdlib
    compare = stdlib.CFUNCTYPE(stdlib.c_int, stdlib.c_void_p, stdlib.c_void_p)(lambda a, b: 0)
    qsort = ct.CDLL("libc.so.6").qsort
    qsort.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_size_t,
                      ct.CFUNCTYPE(ct.c_int, ct.c_void_p, ct.c_void_p)]
    with pytest.raises(ct.ArgumentError, match="made by the stdlib's ctypes.*"
                                                 "make callbacks with ffibox.ctypes.CFUNCTYPE"):
        qsort((ct.c_int * 2)(2, 1), 2, 4, compare)


def test_a_variable_of_pythonapi_is_refused_saying_why(ct):
    """numba reads `_Py_HashSecret` with `in_dll(pythonapi, ...)` as it compiles anything:
    the stdlib's in_dll got a function for pythonapi's `_handle` and said only that it must
    be an integer."""
    with pytest.raises(NotImplementedError, match=r"in_dll\(pythonapi, 'Py_OptimizeFlag'\).*"
                                                   r"stdlib ctypes"):
        ct.c_int.in_dll(ct.pythonapi, "Py_OptimizeFlag")
    with pytest.raises(AttributeError, match="pythonapi has no _handle"):
        ct.pythonapi._handle
    assert ct.pythonapi._PyBytes_Resize.__name__ == "_PyBytes_Resize"  # still a name


GLOBAL_PROVIDER = TEST_LIB.replace("libffibox_test.so", "libffibox_global_provider.so")
GLOBAL_USER = TEST_LIB.replace("libffibox_test.so", "libffibox_global_user.so")


def test_a_library_loaded_with_rtld_global_serves_the_ones_loaded_after_it(ct, server):
    """As dlopen's RTLD_GLOBAL in-process (PyOpenGL loads OSMesa so, for the GLU it loads
    next): the mode reaches the worker, also after a restart. It was dropped, and the
    library loaded after found none of its symbols (or, where it links a library of the
    same names, called that one instead, silently)."""
    ct.CDLL(GLOBAL_PROVIDER)  # RTLD_LOCAL, ctypes' default
    with pytest.raises(OSError, match="undefined symbol: ffibox_global_answer"):
        ct.CDLL(GLOBAL_USER)
    ct.CDLL(GLOBAL_PROVIDER, mode=ct.RTLD_GLOBAL)
    user = ct.CDLL(GLOBAL_USER)
    assert user.ask_global_answer() == 42
    lib = ct.CDLL(TEST_LIB)
    with pytest.raises(ffibox.WorkerCrashed):
        lib.crash_null_deref()
    assert user.ask_global_answer() == 42  # replayed in the new worker, in order
    # A session of its own, loading in the other order, with the same mode given as a
    # flag of the stdlib's: the same.
    with ffibox.connect(server.address) as client, client.session() as session:
        session.CDLL(GLOBAL_PROVIDER, mode=ct.RTLD_GLOBAL | ct.RTLD_LOCAL)
        assert session.CDLL(GLOBAL_USER).ask_global_answer() == 42


def test_in_dll_of_a_missing_symbol_is_value_error(ct):
    lib = ct.CDLL(TEST_LIB)
    with pytest.raises(ValueError):
        ct.c_int.in_dll(lib, "no_such_variable")


def test_pickling_a_function_is_value_error(ct):
    lib = ct.CDLL(TEST_LIB)
    with pytest.raises(ValueError, match="cannot be pickled"):
        pickle.dumps(lib.add_int)


def test_prototypes_of_function_pointers_and_callbacks(ct):
    NOARGS = ct.CFUNCTYPE(None)
    assert bool(NOARGS(42)) and not bool(NOARGS())
    INT_CB = ct.CFUNCTYPE(ct.c_int, ct.c_int)
    OTHER = ct.CFUNCTYPE(ct.c_double, ct.c_double)
    lib = ct.CDLL(TEST_LIB)
    lib.call_twice_nested.argtypes = [INT_CB, ct.c_int]
    with pytest.raises(ct.ArgumentError, match="expected"):
        lib.call_twice_nested(OTHER(lambda x: x), 3)
    # A callback cast to another prototype is still the same callback to the library.
    doubled = INT_CB(lambda x: 2 * x)
    lib.call_twice_nested.argtypes = [OTHER, ct.c_int]
    assert lib.call_twice_nested(ct.cast(doubled, OTHER), 3) == 12


def test_pyfunctype_makes_prototypes_as_the_stdlibs(ct):
    """vispy makes PYFUNCTYPE(c_int) as it is imported (AttributeError before); a star
    import gives every public name of the stdlib's but PyDLL's."""
    import ctypes as stdlib
    INT_CB = ct.PYFUNCTYPE(ct.c_int, ct.c_int)
    assert INT_CB._flags_ == stdlib.PYFUNCTYPE(stdlib.c_int, stdlib.c_int)._flags_
    assert ct.PYFUNCTYPE(ct.c_int, ct.c_int) is INT_CB
    lib = ct.CDLL(TEST_LIB)
    lib.call_twice_nested.argtypes = [INT_CB, ct.c_int]
    assert lib.call_twice_nested(INT_CB(lambda x: 2 * x), 3) == 12
    strlen = ct.PYFUNCTYPE(ct.c_size_t, ct.c_char_p)(("strlen", ct.CDLL("libc.so.6")))
    assert strlen(b"abcd") == 4
    names = {}
    exec("from ffibox.ctypes import *", names)
    public = {name for name, value in vars(stdlib).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert public - set(names) == {"PyDLL", "pydll"}


def test_the_worker_names_a_loaded_library_by_its_path(ct):
    """dladdr and dl_iterate_phdr name the library's file, as in-process: threadpoolctl finds
    libgomp among the loaded objects so (it found none: every name was /proc/self/fd/N)."""
    import os
    class DlInfo(ct.Structure):
        _fields_ = [("dli_fname", ct.c_char_p), ("dli_fbase", ct.c_void_p),
                    ("dli_sname", ct.c_char_p), ("dli_saddr", ct.c_void_p)]
    libc = ct.CDLL("libc.so.6")
    libc.dladdr.argtypes = [ct.c_void_p, ct.POINTER(DlInfo)]
    named = {}
    for path, symbol in ((TEST_LIB, "add_int"), ("libm.so.6", "cos")):
        function = getattr(ct.CDLL(path), symbol)
        info = DlInfo()
        assert libc.dladdr(ct.cast(function, ct.c_void_p), ct.byref(info)) != 0
        named[path] = info.dli_fname
    assert named[TEST_LIB] == os.path.realpath(TEST_LIB).encode()
    assert named["libm.so.6"].startswith(b"/") and b"/libm.so.6" in named["libm.so.6"]
    PhdrInfo = type("PhdrInfo", (ct.Structure,), {
        "_fields_": [("dlpi_addr", ct.c_uint64), ("dlpi_name", ct.c_char_p)]})
    seen = []
    VISIT = ct.CFUNCTYPE(ct.c_int, ct.POINTER(PhdrInfo), ct.c_size_t, ct.c_void_p)
    visit = VISIT(lambda info, size, data: seen.append(info.contents.dlpi_name) or 0)
    assert libc.dl_iterate_phdr(visit, None) == 0
    assert named[TEST_LIB] in seen and named["libm.so.6"] in seen
    assert not [name for name in seen if name.startswith(b"/proc/")]


def callback_threads(ct):
    """Where a callback of module `ct` runs: the threads of its three runs during one call
    (the call's own, then two nested in calls the callback makes), and of its one run from a
    thread the library starts."""
    INT_CB = ct.CFUNCTYPE(ct.c_int, ct.c_int)
    lib = ct.CDLL(TEST_LIB)
    lib.register_handler.argtypes = [INT_CB]
    lib.fire_handler.argtypes = [ct.c_int]
    lib.call_from_thread.argtypes = [INT_CB, ct.c_int]
    ran_on = []

    def record(x):
        ran_on.append(threading.get_ident())
        return lib.fire_handler(x - 1) + 1 if x > 0 else 0

    callback = INT_CB(record)
    lib.register_handler(callback)
    assert lib.fire_handler(2) == 2
    during = list(ran_on)
    ran_on.clear()
    assert lib.call_from_thread(callback, 0) == 0
    return during, list(ran_on)


def test_a_callback_called_during_the_call_runs_on_the_calling_thread(ct):
    # As the stdlib runs it (over gRPC here: the default session of a server at an address).
    import ctypes
    caller = threading.get_ident()
    for module in (ctypes, ct):
        during, from_a_library_thread = callback_threads(module)
        assert during == [caller] * 3, module.__name__
        assert len(from_a_library_thread) == 1, module.__name__
        assert from_a_library_thread[0] != caller, module.__name__


def test_a_callback_of_the_stdlibs_ctypes_is_refused_saying_what_to_use(ct):
    # A binding that takes its prototypes from the stdlib: its callback is code in this
    # process, which the worker cannot call. Refused before anything runs, saying so.
    import ctypes
    compare = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                               ctypes.POINTER(ctypes.c_int))
    values = (ct.c_int * 3)(3, 1, 2)
    libc = ct.CDLL("libc.so.6")
    libc.qsort.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_size_t, compare]
    libc.qsort.restype = None
    with pytest.raises(ct.ArgumentError) as refused:
        libc.qsort(values, 3, 4, compare(lambda a, b: a[0] - b[0]))
    assert "ffibox.ctypes.CFUNCTYPE" in str(refused.value)
    assert list(values) == [3, 1, 2]
    ffibox_compare = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.c_int), ct.POINTER(ct.c_int))
    libc.qsort.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_size_t, ffibox_compare]
    libc.qsort(values, 3, 4, ffibox_compare(lambda a, b: a[0] - b[0]))
    assert list(values) == [1, 2, 3]


def test_callbacks_are_released_when_unreachable(monkeypatch):
    # A server that admits 64 live callbacks per session (the default is 4096): 200
    # callbacks over the session's life get through only if each is freed once collected.
    small = Server("--max_callbacks=64")
    monkeypatch.setenv("FFIBOX_ADDRESS", small.address)
    from ffibox import _default
    from ffibox import ctypes as ct
    monkeypatch.setattr(_default, "_session", None)
    try:
        INT_CB = ct.CFUNCTYPE(ct.c_int, ct.c_int)
        lib = ct.CDLL(TEST_LIB)
        lib.call_twice_nested.argtypes = [INT_CB, ct.c_int]
        session = ct._default_session()
        for i in range(200):
            assert lib.call_twice_nested(INT_CB(lambda x, i=i: x + i), 1) == 1 + 2 * i
            if i % 20 == 0:
                gc.collect()
        gc.collect()
        assert len(session._callbacks) < 30
    finally:
        if _default.opened_session() is not None:
            _default.opened_session().close()
        small.stop()


def test_a_collected_callback_is_released_without_waiting_for_another_definition(server):
    # A collected callback's finalizer runs on whatever thread the collection ran, gRPC's own
    # thread that writes the session's requests among them. It must not wait for a callback
    # being defined meanwhile: that definition's request may be the one that thread is to
    # write (a whole session hung so).
    import ffibox
    from ffibox import ctypes as ct
    client = ffibox.connect(server.address)
    try:
        with client.session(same_host=False) as session:
            lib = session.CDLL(TEST_LIB)
            lib.sleep_ms.argtypes = [ct.c_int]
            INT_CB = ct.CFUNCTYPE(ct.c_int, ct.c_int)
            first = INT_CB(lambda x: x)
            session.callback_id(first)
            busy = threading.Thread(target=lib.sleep_ms, args=(1500,))
            busy.start()
            time.sleep(0.2)
            # Defined behind the busy call: its answer comes once that call returns.
            defining = threading.Thread(target=session.callback_id, args=(INT_CB(lambda x: x),))
            defining.start()
            time.sleep(0.2)
            started = time.monotonic()
            del first
            gc.collect()  # the finalizer runs here
            released = time.monotonic() - started
            defining.join()
            busy.join()
            assert released < 0.5, released
            assert lib.add_int(2, 3) == 5
    finally:
        client.close()


def test_a_library_handle_goes_to_ctypes_own_dlsym_and_dlclose(ct):
    # sasmodels unloads its kernels with _ctypes.dlclose(lib._handle): the stdlib's took an
    # ffibox library's handle, a small number, for a library of this process and crashed it.
    import _ctypes
    libm = ct.CDLL("libm.so.6")
    address = _ctypes.dlsym(libm._handle, "cos")
    assert ct.CFUNCTYPE(ct.c_double, ct.c_double)(address)(0.5) == math.cos(0.5)
    with pytest.raises(OSError, match="undefined symbol: no_such_symbol"):
        _ctypes.dlsym(libm._handle, "no_such_symbol")
    assert _ctypes.dlclose(libm._handle) is None
    libm.fabs.argtypes, libm.fabs.restype = [ct.c_double], ct.c_double
    assert libm.fabs(-2.5) == 2.5  # loaded in its worker until the session ends
    handle = ct.CDLL("libm.so.6")._handle  # valid after its CDLL went, as a stdlib handle
    gc.collect()
    assert _ctypes.dlsym(handle, "cos") == address
    from ffibox import _library
    del _library._by_token[handle]  # as when its session ended and was collected: still ours
    with pytest.raises(OSError, match="has ended"):
        _ctypes.dlsym(handle, "cos")
    assert _ctypes.dlclose(handle) is None
    stdlib_libm = _ctypes.dlopen("libm.so.6", ct.RTLD_LOCAL)  # the stdlib's take the rest
    assert _ctypes.dlsym(stdlib_libm, "cos") > 0
    assert _ctypes.dlclose(stdlib_libm) is None


def test_a_library_loaded_again_and_again_takes_no_descriptor_of_its_worker_each_time(server):
    # ctypes code makes a CDLL of a library as it goes: each load kept a descriptor of the
    # file open in the worker, and load 250 of one session failed (too many open files),
    # and every load after it, short of the 256 libraries a session may load.
    import ffibox
    client = ffibox.connect(server.address)
    try:
        with client.session() as session:
            for _ in range(254):
                lib = session.CDLL(TEST_LIB)
            assert lib.add_int(2, 3) == 5
            assert session.CDLL("libm.so.6").abs(-4) == 4  # and another library
    finally:
        client.close()


def test_paramflags_make_output_parameters(ct):
    lib = ct.CDLL(TEST_LIB)
    prototype = ct.CFUNCTYPE(None, ct.POINTER(ct.c_int), ct.c_int)
    # void fill_squares(int* out, int n): here a one-element output
    fill = prototype(("fill_squares", lib), ((2, "out"), (1, "n", 1)))
    assert fill() == 0
    fill_names = ct.CFUNCTYPE(ct.c_int, ct.c_int, ct.c_int)(
        ("add_int", lib), ((1, "a"), (1, "b", 5)))
    assert fill_names(1) == 6 and fill_names(a=2, b=3) == 5


def test_bytes_and_str_for_char_and_wchar_pointers(ct):
    lib = ct.CDLL(TEST_LIB)
    lib.str_len.argtypes = [ct.POINTER(ct.c_char)]
    lib.str_len.restype = ct.c_size_t
    assert lib.str_len(b"hello") == 5


def test_a_c_char_p_subclass_result_is_read_where_it_points(ct):
    # As in ctypes, a c_char_p subclass result stays a pointer: string_at, cast and memmove
    # read the string it points to (in the worker).
    class Text(ct.c_char_p):
        pass

    lib = ct.CDLL(TEST_LIB)
    lib.greeting.restype = Text
    text = lib.greeting()
    assert text.value == b"hello, ffibox"
    assert ct.string_at(text) == b"hello, ffibox"
    assert ct.string_at(text, 5) == b"hello"
    assert ct.cast(text, ct.c_char_p).value == b"hello, ffibox"
    buffer = ct.create_string_buffer(6)
    ct.memmove(buffer, text, 5)
    assert buffer.value == b"hello"


def test_a_buffer_larger_than_grpcs_default_message_comes_back_whole(libc, ct):
    # 12 MiB: past gRPC's 4 MiB default receive limit, under the server's 16 MiB request cap.
    size = 12 << 20
    buffer = ct.create_string_buffer(size)
    libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
    libc.memset.restype = ct.c_void_p
    libc.memset(buffer, 0x5A, size)
    assert buffer.raw == b"\x5a" * size


def test_memory_of_another_sessions_worker_is_refused_by_name(server):
    # A view of one session's worker memory (in_dll, .contents) or a pointer it returned is
    # an address there: passed to another session's call it would name other memory in
    # that worker, so the call is refused before it is sent, and both sessions go on.
    import ffibox
    from ffibox import ctypes as fct
    c = ffibox.connect(server.address)
    with c.session() as first, c.session() as second:
        scale = fct.c_double.in_dll(first.CDLL(TEST_LIB), "ffibox_scale")
        lib, libc = first.CDLL(TEST_LIB), second.CDLL("libc.so.6")
        lib.ptr_offset.argtypes = [fct.c_void_p, fct.c_long]
        lib.ptr_offset.restype = fct.POINTER(fct.c_double)
        returned = lib.ptr_offset(fct.byref(scale), 0)
        assert returned.contents.value == 2.25
        libc.memset.argtypes = [fct.c_void_p, fct.c_int, fct.c_size_t]
        libc.memset.restype = fct.c_void_p
        other = second.CDLL(TEST_LIB)
        other.ptr_offset.argtypes = [fct.POINTER(fct.c_double), fct.c_long]
        other.ptr_offset.restype = fct.c_void_p

        class Point(fct.Structure):
            _fields_ = [("x", fct.c_double), ("y", fct.c_double)]
        origin = Point.in_dll(lib, "ffibox_origin")
        other.point_add.argtypes, other.point_add.restype = [Point, Point], Point
        for call in (lambda: libc.memset(fct.byref(scale), 0, 8),
                     lambda: libc.memset(returned, 0, 8),
                     lambda: other.ptr_offset(fct.pointer(scale), 0),
                     lambda: other.ptr_offset(returned, 0),
                     lambda: other.ptr_offset(fct.byref(scale), 8),
                     lambda: other.point_add(origin, Point(1, 1))):
            with pytest.raises(fct.ArgumentError, match="another session's worker"):
                call()
        assert scale.value == 2.25 and libc.memset(None, 0, 0) is None
        assert other.point_add(Point(origin.x, origin.y), Point(1, 1)).x == 2.5
    c.close()


def test_a_worker_string_longer_than_a_read_is_refused_never_cut_short(ct):
    # The server reads at most 16 Mi characters of a string: one at least that long raises,
    # as a returned string that long does, instead of arriving cut.
    libc = ct.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ct.c_void_p, [ct.c_size_t]
    libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
    libc.free.argtypes = [ct.c_void_p]
    size = (16 << 20) + 10
    text = libc.malloc(size + 1)
    libc.memset(text, ord("a"), size)
    libc.memset(text + size, 0, 1)
    with pytest.raises(ffibox.Error) as refused:
        ct.string_at(text)
    assert refused.value.code == "RESOURCE_EXHAUSTED"
    assert "16777216 characters or longer" in str(refused.value)
    assert ct.string_at(text, 5) == b"aaaaa"
    libc.memset(text + 1000, 0, 1)
    assert ct.string_at(text) == b"a" * 1000
    libc.free(text)
