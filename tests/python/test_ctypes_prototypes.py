"""Prototypes made from a library's function with paramflags, and a function's own attributes,
side by side with the stdlib in-process (the `ct` fixture runs each test under both): output
and input-output parameters come back as ctypes returns them, and errcheck sees what ctypes
shows it."""
import pytest


def divmod_prototype(ct, testlib, paramflags):
    # int divmod(int a, int b, int* quotient, int* remainder)
    prototype = ct.CFUNCTYPE(ct.c_int, ct.c_int, ct.c_int, ct.POINTER(ct.c_int),
                             ct.POINTER(ct.c_int))
    return prototype(("divmod", testlib), paramflags)


def test_input_output_parameters_come_back_as_the_caller_gave_them(ct, testlib):
    increment = ct.CFUNCTYPE(None, ct.POINTER(ct.c_int))(("increment", testlib), ((3, "p"),))
    given = ct.c_int(5)
    back = increment(given)
    assert back is given and given.value == 6
    both = divmod_prototype(ct, testlib, ((1, "a"), (1, "b", 3), (2, "q"), (3, "r")))
    quotient, remainder = both(10, 4, ct.c_int(0))
    assert quotient == 2 and type(remainder) is ct.c_int and remainder.value == 2


def test_output_parameters_of_arrays_and_defaults(ct, testlib):
    # void fill_squares(int* out, int n)
    squares = ct.CFUNCTYPE(None, ct.c_int * 4, ct.c_int)(
        ("fill_squares", testlib), ((2, "out"), (1, "n", 4)))
    assert list(squares()) == [0, 1, 4, 9]
    given = ct.c_int(-1)
    first = ct.CFUNCTYPE(None, ct.POINTER(ct.c_int), ct.c_int)(
        ("fill_squares", testlib), ((2, "out", given), (1, "n", 1)))
    assert first() == 0 and given.value == 0  # a simple type comes back as its value


def test_errcheck_sees_the_arguments_as_objects_and_its_result_is_returned(ct, testlib):
    both = divmod_prototype(ct, testlib, ((1, "a"), (1, "b"), (2, "q"), (2, "r")))
    assert both(17, 5) == (3, 2)
    both.errcheck = lambda result, function, args: ("checked", result, function is both)
    assert both(17, 5) == ("checked", 0, True)
    both.errcheck = lambda result, function, args: (result, args[2].value, args[3].value)
    assert both(17, 5) == (0, 3, 2)
    # Returning the arguments themselves asks for the outputs, as without errcheck.
    both.errcheck = lambda result, function, args: args
    assert both(17, 5) == (3, 2)
    with pytest.raises(TypeError):
        both.errcheck = 5


def test_argtypes_read_back_as_set_and_can_be_deleted(ct, testlib):
    add = testlib.add_int
    add.argtypes = [ct.c_int, ct.c_int]
    assert add.argtypes == [ct.c_int, ct.c_int] and type(add.argtypes) is list
    assert add(2, 3) == 5
    del add.argtypes
    assert add.argtypes is None
    assert add(2, 3) == 5
    with pytest.raises(TypeError):
        add.errcheck = None  # errcheck must be callable; `del` unsets it
    add.errcheck = lambda result, function, args: result * 10
    assert add(2, 3) == 50
    del add.errcheck
    assert add(2, 3) == 5


def test_a_library_class_asks_for_errno_through_its_func_flags(ct):
    class ErrnoLibrary(ct.CDLL):
        _func_flags_ = ct.CDLL._func_flags_ | ct._FUNCFLAG_USE_ERRNO

    ct.set_errno(0)
    assert ErrnoLibrary("libc.so.6").close(-1) == -1
    assert ct.get_errno() == 9  # EBADF


def test_an_as_parameter_is_followed_as_far_as_it_goes(ct, testlib):
    class Wrapped:
        def __init__(self, value):
            self._as_parameter_ = value

    add = testlib.add_int
    assert add(Wrapped(Wrapped(5)), 1) == 6  # inferred
    add.argtypes = [ct.c_int, ct.c_int]
    assert add(Wrapped(Wrapped(Wrapped(5))), Wrapped(1)) == 6  # declared


def test_a_prototype_of_a_library_function_is_a_function_pointer_like_any(ct, testlib, libc):
    unary = ct.CFUNCTYPE(ct.c_int, ct.c_int)
    absolute = unary(("abs", libc))
    assert isinstance(absolute, unary) and absolute(-3) == 3
    assert libc.abs.argtypes is None  # the library's own function object is left as it was
    # int call_twice_nested(int (*h)(int), int x): h(h(x)) in the library
    twice = testlib.call_twice_nested
    twice.argtypes = [unary, ct.c_int]
    assert twice(absolute, -5) == 5
    # A library's function is a function pointer and a void* too.
    assert isinstance(ct.cast(libc.abs, ct.c_void_p).value, int)
    assert ct.cast(libc.abs, unary)(-4) == 4
    twice.argtypes = [ct.c_void_p, ct.c_int]
    assert twice(libc.abs, -6) == 6

    class Holder(ct.Structure):
        _fields_ = [("function", unary)]

    held = Holder(unary(("abs", libc)))
    assert held.function(-7) == 7


def test_paramflags_are_checked_when_the_prototype_is_made(ct, testlib):
    prototype = ct.CFUNCTYPE(ct.c_int, ct.c_int, ct.c_int)
    for flag in (4, 6, 7):
        with pytest.raises(TypeError, match="paramflag value %d not supported" % flag):
            prototype(("add_int", testlib), ((1, "a"), (flag, "b")))
    with pytest.raises(TypeError, match="'out' parameter 2 must be a pointer type"):
        prototype(("add_int", testlib), ((1, "a"), (2, "b")))
    # An in-out parameter may be of any type: it comes back as the caller gave it.
    assert prototype(("add_int", testlib), ((1, "a"), (3, "b")))(1, 2) == 2
    # An lcid parameter (flag 4 with 1) is its default, never an argument.
    with_lcid = prototype(("add_int", testlib), ((1, "a"), (5, "b", 2)))
    assert with_lcid(1) == 3
    with pytest.raises(TypeError):
        with_lcid(1, 5)


def test_an_int_with_an_as_parameter_is_passed_as_the_int(ct, testlib):
    class Number(int):
        _as_parameter_ = 100

    assert testlib.add_int(Number(1), 1) == 2
    testlib.add_int.argtypes = [ct.c_int, ct.c_int]
    assert testlib.add_int(Number(1), 1) == 2
