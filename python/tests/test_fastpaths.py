"""The binding's inline paths (issue 13) against the library's functions:
the same results at the edges of every integer type."""
import pytest

import shval

INT_LIMITS = {
    'b': (-2 ** 7, 2 ** 7 - 1), 'B': (0, 2 ** 8 - 1),
    'h': (-2 ** 15, 2 ** 15 - 1), 'H': (0, 2 ** 16 - 1),
    'i': (-2 ** 31, 2 ** 31 - 1), 'I': (0, 2 ** 32 - 1),
    'q': (-2 ** 63, 2 ** 63 - 1), 'Q': (0, 2 ** 64 - 1),
}


@pytest.mark.parametrize('code', sorted(INT_LIMITS))
def test_locked_add_inline_equals_library(code):
    lo, hi = INT_LIMITS[code]
    for start in (lo, lo + 1, 0, hi - 1, hi):
        for delta in (1, -1, 2 ** 40 + 3, -(2 ** 40) - 3, 0):
            fast = shval.Value(code, start)     # inline section
            slow = shval.Value(code, start)
            with slow.get_lock():               # held: the library's add
                want = slow.add(delta)
            got = fast.add(delta)
            assert got == want, (code, start, delta)
            assert fast.value == slow.value == want
            fast.value = start                  # inline write
            assert fast.value == start


@pytest.mark.parametrize('code', ['i', 'q'])
def test_int_slices_across_the_small_int_table(code):
    lo, hi = INT_LIMITS[code]
    vals = [lo, -6, -5, -1, 0, 1, 255, 256, 257, hi]
    a = shval.Array(code, vals)
    assert a[:] == vals
    assert a[::-1] == vals[::-1]
    assert list(a) == vals
    r = shval.RawArray(code, 300)
    r[:] = list(range(-5, 295))
    assert r[:] == list(range(-5, 295))
