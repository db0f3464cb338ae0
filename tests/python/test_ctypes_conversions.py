"""How arguments are converted, side by side with the stdlib in-process (the `ct` fixture
runs each test under both): a ctypes subclass's own from_param decides what goes, an int
without a declared type is refused where ctypes refuses it, and ArgumentError reads as the
stdlib's."""
import pytest


def test_a_subclass_from_param_result_is_what_goes(ct, testlib):
    class Scaled(ct.c_int):
        @classmethod
        def from_param(cls, value):
            return ct.c_int(value * 100)

    testlib.add_int.argtypes = [Scaled, Scaled]
    assert testlib.add_int(1, 2) == 300


def test_a_c_char_p_subclass_that_takes_str(ct, testlib):
    class Text(ct.c_char_p):
        @classmethod
        def from_param(cls, value):
            if isinstance(value, str):
                value = value.encode("utf-8")
            return ct.c_char_p(value)

    testlib.str_len.argtypes = [Text]
    testlib.str_len.restype = ct.c_size_t
    assert testlib.str_len("hello") == 5
    assert testlib.str_len(b"bytes too") == 9


def test_a_from_param_that_refuses_is_an_argument_error(ct, testlib):
    class Positive(ct.c_int):
        @classmethod
        def from_param(cls, value):
            if value < 0:
                raise ValueError("must not be negative")
            return ct.c_int(value)

    testlib.add_int.argtypes = [Positive, ct.c_int]
    assert testlib.add_int(4, 5) == 9
    with pytest.raises(ct.ArgumentError) as refused:
        testlib.add_int(-4, 5)
    assert str(refused.value) == "argument 1: ValueError: must not be negative"


def test_an_untyped_int_beyond_a_c_long_is_an_overflow(ct, testlib):
    testlib.is_even.argtypes = None
    assert testlib.is_even(4) == 1
    for huge in (2 ** 64, 2 ** 64 + 1, -(2 ** 63) - 1, 10 ** 30):
        with pytest.raises(ct.ArgumentError) as refused:
            testlib.is_even(huge)
        assert str(refused.value) == "argument 1: OverflowError: int too long to convert"


def test_a_pointer_into_part_of_an_array_reaches_the_rest_of_it(ct, libc):
    # What the library writes past the element a pointer names lands in the array, as the
    # memory is the array's: through cast(byref(array, offset), ...) and through a from_buffer
    # view of one element.
    libc.memset.argtypes = [ct.c_void_p, ct.c_int, ct.c_size_t]
    numbers = (ct.c_int * 4)()
    libc.memset(ct.cast(ct.byref(numbers, 4), ct.POINTER(ct.c_int)), 1, 12)
    assert list(numbers) == [0, 0x01010101, 0x01010101, 0x01010101]
    numbers = (ct.c_int * 4)()
    libc.memset(ct.pointer(ct.c_int.from_buffer(numbers, 4)), 2, 12)
    assert list(numbers) == [0, 0x02020202, 0x02020202, 0x02020202]
