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


# ---- the hot `.value` / add paths (python/shval_py.h, "Hot paths") ----

HOT_CODES = ['i', 'I', 'l', 'L', 'q', 'Q', 'n', 'N']
EDGES = [-2 ** 30 - 1, -2 ** 30, -2 ** 30 + 1, -257, -6, -5, -1, 0, 1, 255,
         256, 257, 2 ** 30 - 1, 2 ** 30, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1,
         2 ** 32, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, 2 ** 64, True, False]


def _outcome(fn):
    try:
        return ('ok', fn())
    except Exception as e:  # noqa: BLE001 -- the exact error is compared
        return (type(e), str(e))


@pytest.mark.parametrize('lock', [True, False, 'raw'])
@pytest.mark.parametrize('code', HOT_CODES)
def test_hot_value_set_get_equals_ctypes_path(code, lock):
    """Every edge written through the hot setter and the general one (a
    subclass of int takes the general conversion) gives the same value or
    the same error; reads give what was written."""
    def make():
        return shval.RawValue(code) if lock == 'raw' else shval.Value(code, lock=lock)
    for x in EDGES:
        hot, gen = make(), make()

        def set_hot():
            hot.value = x
            return hot.value

        def set_gen():
            gen.value = _Int(x) if type(x) is int else x
            return gen.value
        assert _outcome(set_hot) == _outcome(set_gen), (code, lock, x)
        assert hot.value == gen.value


class _Int(int):
    pass


@pytest.mark.parametrize('code', HOT_CODES)
def test_hot_add_edges_equal_library(code):
    """add() of small deltas (hot) against big ones that wrap to the same
    (general) and the library's add inside a held lock (nested)."""
    bits = 32 if code in 'iI' else 64
    for start in (0, 1, -1, 2 ** 30, -(2 ** 30)):
        for d in (1, -1, 2 ** 30 - 1, -(2 ** 30 - 1), 0):
            try:
                hot = shval.Value(code, start)
            except (OverflowError, ValueError):
                continue            # negative start on an unsigned type
            atomic = shval.RawValue(code, start)
            held = shval.Value(code, start)
            with held.get_lock():
                want = held.add(d)
            assert hot.add(d) == want == atomic.add(d), (code, start, d)
            # an int subclass takes the general path
            assert shval.Value(code, start).add(_Int(d)) == want
            if bits == 32:          # a big delta that wraps to the same
                assert shval.Value(code, start).add(d + 2 ** 32) == want


def test_nested_writes_commit_once_and_wake():
    """Writes inside `with v.get_lock():` (the inline nested write): reads
    inside see them, readers outside the version moves once, at the end."""
    v = shval.Value('i', 1)
    ver = v.version
    with v.get_lock():
        v.value = 2
        assert v.value == 2
        v.value += 5
        assert v.value == 7
        v.value = 8
        assert v.version == ver   # not committed yet
    assert v.value == 8
    assert v.version != ver
    ver = v.version
    with v.get_lock():
        pass                      # nothing changed: no commit
    assert v.version == ver
    assert v.wait(timeout=0) is False


def test_nested_writes_rolled_back_to_the_sections_start():
    """Two writes in one section, then the owner dies: the value goes back
    to its state before the section (the undo copy is taken once)."""
    import multiprocessing
    import warnings
    from helpers import die_in_section
    ctx = multiprocessing.get_context('fork')
    for code, start in (('i', 1), ('q', -3)):
        v = shval.Value(code, start)
        p = ctx.Process(target=die_in_section,
                        args=(v.get_lock(), [(v, None, 99), (v, None, 98)], 'kill'))
        p.start()
        p.join(60)
        assert p.exitcode is not None
        assert v.value == start
        with pytest.warns(shval.OwnerDiedWarning):
            v.value = 5
        assert v.value == 5
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            assert v.add(1) == 6
