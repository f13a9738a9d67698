"""Array / RawArray: ports of CPython's _TestArray and shval's extras.
The tests taking `kind` run on a local and on a Redis segment (conftest.py)."""
import array
import ctypes

import pytest

import shval
from conftest import run
from helpers import Point, prefix_sums

SEQ = [680, 626, 934, 821, 150, 233, 548, 982, 714, 831]


def _check_array(make, ctx):
    arr = make('i', SEQ)
    assert len(arr) == len(SEQ)
    assert arr[3] == SEQ[3]
    assert list(arr[2:7]) == SEQ[2:7]
    arr[4:8] = array.array('i', [1, 2, 3, 4])
    seq = SEQ[:4] + [1, 2, 3, 4] + SEQ[8:]
    assert list(arr[:]) == seq
    prefix_sums(seq)
    run(ctx, prefix_sums, arr)
    assert list(arr[:]) == seq


def test_array(ctx, kind):
    _check_array(kind.Array, ctx)


def test_rawarray(ctx, kind):
    _check_array(kind.RawArray, ctx)


def test_array_from_size(kind):
    size = 10
    for _ in range(3):
        arr = kind.Array('i', size)
        assert len(arr) == size
        assert list(arr) == [0] * size
        arr[:] = range(10)
        assert list(arr) == list(range(10))
        del arr


def test_getobj_getlock_obj():
    arr1 = shval.Array('i', list(range(10)))
    arr1.get_lock()
    arr1.get_obj()
    arr2 = shval.Array('i', list(range(10)), lock=None)
    arr2.get_lock()
    arr2.get_obj()
    lock = shval.Lock()
    arr3 = shval.Array('i', list(range(10)), lock=lock)
    assert arr3.get_lock() is lock
    arr3.get_obj()
    arr4 = shval.Array('i', range(10), lock=False)
    assert not hasattr(arr4, 'get_lock')
    assert not hasattr(arr4, 'get_obj')
    with pytest.raises(AttributeError):
        shval.Array('i', range(10), lock='notalock')
    arr5 = shval.RawArray('i', range(10))
    assert not hasattr(arr5, 'get_lock')
    assert not hasattr(arr5, 'get_obj')


def test_invalid_typecode():
    with pytest.raises(TypeError, match='bad typecode'):
        shval.Array('x', [])
    with pytest.raises(TypeError, match='bad typecode'):
        shval.RawArray('x', [])


def test_indexing_slicing(kind):
    a = kind.Array('d', [0.5 * i for i in range(8)])
    assert a[-1] == 3.5
    assert a[::2] == [0.0, 1.0, 2.0, 3.0]
    a[::2] = [9, 9, 9, 9]
    assert a[:4] == [9.0, 0.5, 9.0, 1.5]
    with pytest.raises(IndexError):
        a[8]
    with pytest.raises(IndexError):
        a[-9] = 1
    with pytest.raises(ValueError, match='same size'):
        a[0:2] = [1, 2, 3]
    with pytest.raises(TypeError):
        del a[0]
    assert 9.0 in a
    assert list(reversed(a))[0] == a[7]
    assert '_Array_8' in repr(a)


def test_char_array(kind):
    for make in (kind.Array, kind.RawArray):
        s = make('c', 10)
        s.value = b'hello'
        assert s.value == b'hello'
        assert s.raw == b'hello' + b'\0' * 5
        s.raw = b'ab\0cd'
        assert s.value == b'ab'
        assert s.raw[:5] == b'ab\0cd'
        assert s[0] == b'a' and s[1:3] == b'b\0'
        assert list(s)[:2] == [b'a', b'b']
        s[0] = b'Z'
        assert s.value == b'Zb'
        with pytest.raises(ValueError):
            s.value = b'x' * 11
        s.value = b'x' * 10
        assert s.value == b'x' * 10
    assert type(kind.Array('c', 3)) is shval.SynchronizedString
    init = kind.Array('c', b'hello world')
    assert len(init) == 11 and init.value == b'hello world'


def test_wchar_array(kind):
    u = kind.Array('u', 'h\u00e9llo')
    assert len(u) == 5
    assert u.value == 'h\u00e9llo'
    assert u[1] == '\u00e9'
    u.value = 'ab'
    assert u.value == 'ab'
    with pytest.raises(ValueError):
        u.value = 'abcdef'


def test_ctypes_element_types():
    a = shval.Array(ctypes.c_uint16, [1, 2, 3])
    assert a[:] == [1, 2, 3]
    with pytest.raises(ValueError):
        a[0] = -1


def test_structure_array():
    A = shval.Array(Point, [(1.875, -6.25), (-5.75, 2.0), (2.375, 9.5)])
    for a in A:
        a.x **= 2
        a.y **= 2
    assert [(a.x, a.y) for a in A] == [(3.515625, 39.0625), (33.0625, 4.0), (5.640625, 90.25)]
    A[1] = Point(1, 1)
    A[2] = (2, 2)
    assert (A[1].x, A[2].y) == (1.0, 2.0)
    assert len(shval.RawArray(Point, 4)) == 4


def test_buffer_protocol(kind):
    a = kind.Array('i', range(5))
    if not kind.local:
        # documented difference: no shared memory, no zero-copy buffer
        with pytest.raises(TypeError, match='no shared memory'):
            memoryview(a)
        with pytest.raises(TypeError, match='no shared memory'):
            memoryview(kind.RawValue('d', 1.5))
        return
    m = memoryview(a)
    assert m.format == 'i' and m.shape == (5,) and not m.readonly
    m[2] = 42
    assert a[2] == 42
    m.release()
    v = kind.RawValue('d', 1.5)
    mv = memoryview(v)
    assert mv.format == 'd' and mv.nbytes == 8


def test_numpy_zero_copy():
    np = pytest.importorskip('numpy')
    a = shval.RawArray('d', 6)
    n = np.frombuffer(a, dtype=np.float64)
    n[:] = np.arange(6)
    assert a[:] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    b = shval.Array('i', 4)
    nb = np.asarray(b.get_obj())
    assert nb.dtype == np.int32
    b[3] = 7
    assert nb[3] == 7
