"""Value / RawValue: multiprocessing.sharedctypes behaviour (ports of
CPython's _TestValue, _TestSharedCTypes) and shval's extras.
The tests taking `kind` run on a local and on a Redis segment (conftest.py)."""
import ctypes
import math
import threading

import pytest

import shval
from conftest import run
from helpers import Foo, Point, set_values, double_all

CODES_VALUES = [
    ('i', 4343, 24234),
    ('d', 3.625, -4.25),
    ('h', -232, 234),
    ('q', 2 ** 33, 2 ** 34),
    ('c', b'x', b'y'),
]


def test_value(ctx, kind):
    values = [kind.Value(code, v) for code, v, _ in CODES_VALUES]
    for sv, (_, v, _) in zip(values, CODES_VALUES):
        assert sv.value == v
    run(ctx, set_values, values, [c[2] for c in CODES_VALUES])
    for sv, (_, _, new) in zip(values, CODES_VALUES):
        assert sv.value == new


def test_rawvalue(ctx, kind):
    values = [kind.RawValue(code, v) for code, v, _ in CODES_VALUES]
    run(ctx, set_values, values, [c[2] for c in CODES_VALUES])
    for sv, (_, _, new) in zip(values, CODES_VALUES):
        assert sv.value == new


def test_getobj_getlock():
    val1 = shval.Value('i', 5)
    lock1 = val1.get_lock()
    obj1 = val1.get_obj()
    assert obj1.value == 5
    val2 = shval.Value('i', 5, lock=None)
    val2.get_lock()
    val2.get_obj()
    lock = shval.Lock()
    val3 = shval.Value('i', 5, lock=lock)
    assert val3.get_lock() is lock
    val3.get_obj()
    assert isinstance(lock1, shval.RLock)
    arr4 = shval.Value('i', 5, lock=False)
    assert not hasattr(arr4, 'get_lock')
    assert not hasattr(arr4, 'get_obj')
    with pytest.raises(AttributeError, match="has no method 'acquire'"):
        shval.Value('i', 5, lock='navalue')
    with pytest.raises(AttributeError):
        shval.Value('i', 5, lock=threading.Lock())
    arr5 = shval.RawValue('i', 5)
    assert not hasattr(arr5, 'get_lock')
    assert not hasattr(arr5, 'get_obj')


def test_invalid_typecode():
    with pytest.raises(TypeError, match='bad typecode'):
        shval.Value('x', None)
    with pytest.raises(TypeError, match='bad typecode'):
        shval.RawValue('x', None)
    with pytest.raises(TypeError, match='bad typecode'):
        shval.Value(42)
    with pytest.raises(TypeError, match='bad typecode'):
        shval.Value(dict)


@pytest.mark.parametrize('ptype', [ctypes.c_char_p, ctypes.c_wchar_p, ctypes.c_void_p,
                                   ctypes.POINTER(ctypes.c_int)])
def test_pointer_types_rejected(ptype):
    for make in (shval.Value, shval.RawValue):
        with pytest.raises(TypeError, match='pointer') as ei:
            make(ptype)
        assert "Array('c'" in str(ei.value) and '64s' in str(ei.value)
    with pytest.raises(TypeError, match='pointer'):
        shval.Array(ptype, 3)

    class S(ctypes.Structure):
        _fields_ = [('p', ptype)]
    with pytest.raises(TypeError, match='pointer'):
        shval.Value(S)


@pytest.mark.parametrize('code,ctype,val', [
    ('b', ctypes.c_byte, -5), ('B', ctypes.c_ubyte, 250), ('h', ctypes.c_short, -30000),
    ('H', ctypes.c_ushort, 65000), ('i', ctypes.c_int, -2 ** 31), ('I', ctypes.c_uint, 2 ** 32 - 1),
    ('l', ctypes.c_long, -2 ** 63), ('L', ctypes.c_ulong, 2 ** 64 - 1),
    ('q', ctypes.c_longlong, 2 ** 62), ('Q', ctypes.c_ulonglong, 2 ** 64 - 1),
    ('f', ctypes.c_float, 0.5), ('d', ctypes.c_double, 1 / 3), ('c', ctypes.c_char, b'z'),
    ('u', ctypes.c_wchar, '\u20ac'), (None, ctypes.c_bool, True), (None, ctypes.c_int8, -1),
    (None, ctypes.c_uint64, 2 ** 63), (None, ctypes.c_size_t, 12),
])
def test_typecodes_and_ctypes(code, ctype, val):
    makers = [ctype] + ([code] if code else [])
    for t in makers:
        for lock in (True, False):
            v = shval.Value(t, val, lock=lock)
            assert v.value == val
            assert type(v.value) is type(val)
        r = shval.RawValue(t)
        assert r.value == ctype().value
        r.value = val
        assert r.value == val
        assert ctypes.sizeof(ctype) == memoryview(r).nbytes


def test_out_of_range_and_wrong_types():
    v = shval.Value('h')
    with pytest.raises(ValueError):
        v.value = 2 ** 15
    with pytest.raises(ValueError):
        shval.Value('B', -1)
    with pytest.raises(TypeError):
        v.value = 1.5
    with pytest.raises(TypeError):
        shval.Value('c', 'x')
    with pytest.raises(TypeError):
        shval.Value('i', 1, 2)
    assert v.value == 0


def test_sharedctypes_struct_and_copy(ctx):
    for lock in (False, True):
        x = shval.Value('i', 7, lock=lock)
        y = shval.Value(ctypes.c_double, 1.0 / 3.0, lock=lock)
        foo = shval.Value(Foo, 3, 2, lock=lock)
        arr = shval.Array('d', list(range(10)), lock=lock)
        string = shval.Array('c', 20, lock=lock)
        string.value = b'hello'
        run(ctx, double_all, x, y, foo, arr, string)
        assert x.value == 14
        assert y.value == pytest.approx(2.0 / 3.0)
        assert foo.x == 6
        assert foo.y == pytest.approx(4.0)
        assert foo.z == 0
        for i in range(10):
            assert arr[i] == pytest.approx(i * 2)
        assert string.value == b'hellohello'


def test_copy():
    foo = Foo(2, 5.0, 2 ** 33)
    bar = shval.copy(foo)
    foo.x = 0
    foo.y = 0
    foo.z = 0
    assert bar.x == 2
    assert bar.y == 5.0
    assert bar.z == 2 ** 33
    assert not hasattr(bar, 'get_lock')
    v = shval.Value('d', 1.5)
    c = shval.copy(v)
    v.value = 0
    assert c.value == 1.5


def test_synchronized():
    raw = shval.RawValue('i', 3)
    s = shval.synchronized(raw)
    assert isinstance(s.get_lock(), shval.RLock)
    with s.get_lock():
        s.value += 1
    assert raw.value == 4
    lock = shval.Lock()
    s2 = shval.synchronized(shval.RawArray('i', 3), lock)
    assert s2.get_lock() is lock
    s2[1] = 5
    assert s2[:] == [0, 5, 0]
    with pytest.raises(AssertionError):
        shval.synchronized(s)
    sf = shval.synchronized(Point(1, 2))
    assert (sf.x, sf.y) == (1, 2)


def test_struct_value():
    p = shval.Value(Point, 1.5, -2)
    assert (p.x, p.y) == (1.5, -2.0)
    p.y = 7
    assert p.get_obj().y == 7
    snap = p.value
    assert isinstance(snap, Point) and snap.y == 7
    assert 'Point(x=1.5, y=7.0)' in repr(p)

    class Bad(ctypes.Structure):
        _fields_ = [('a', ctypes.c_int, 3)]
    with pytest.raises(TypeError, match='bit'):
        shval.Value(Bad)

    class Packed(ctypes.Structure):
        _pack_ = 1
        _fields_ = [('a', ctypes.c_char), ('b', ctypes.c_int)]
    with pytest.raises(TypeError, match='layout'):
        shval.Value(Packed)

    class WithArrays(ctypes.Structure):
        _fields_ = [('name', ctypes.c_char * 8), ('v', ctypes.c_double * 3)]
    w = shval.Value(WithArrays)
    w.name = b'abc'
    w.v = [1, 2, 3]
    assert w.name == b'abc' and w.v == [1.0, 2.0, 3.0]
    assert w.type == 'name:8c v:3d'


def test_value_repr_and_with(kind):
    v = kind.Value('i', 5)
    assert repr(v) == '<Synchronized wrapper for c_int(5)>'
    assert repr(kind.RawValue('d', 2.5)) == 'c_double(2.5)'
    with v as r:
        assert r is True
        v.value += 1
    assert v.acquire() is True
    v.release()
    assert v.value == 6


def test_get_lock_idiom_threads(kind):
    v = kind.Value('i', 0)

    def work():
        for _ in range(2000):
            with v.get_lock():
                v.value += 1
    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert v.value == 8000


def test_add_cas_exchange(kind):
    for lock in (True, False):
        v = kind.Value('q', 10, lock=lock)
        assert v.add(5) == 15
        assert v.add(-20) == -5
        assert v.cas(-5, 1) is True
        assert v.cas(-5, 2) is False
        assert v.exchange(9) == 1
        assert v.value == 9
        d = kind.Value('d', 0.5, lock=lock)
        assert d.add(0.25) == 0.75
        assert d.cas(0.75, 2.0) and d.value == 2.0
        assert d.exchange(3.0) == 2.0
    u = kind.RawValue('Q', 2 ** 64 - 1)
    assert u.add(1) == 0
    b = kind.RawValue('B', 255)
    assert b.add(1) == 0  # wraps as the hardware does
    with pytest.raises(TypeError):
        (shval.Value(Point) if kind.local else kind.Value('x:d y:d')).add(1)


def test_add_threads_exact(kind):
    v = kind.Value('i', 0, lock=False)

    def work():
        for _ in range(5000):
            v.add(1)
    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert v.value == 20000


def test_version_and_wait(kind):
    for lock in (True, False):
        v = kind.Value('i', 0, lock=lock)
        v0 = v.version
        assert v.wait(timeout=0.05) is False
        v.value = 1
        assert v.version != v0
        assert v.wait(timeout=0, version=v0) is True
        t = threading.Timer(0.1, lambda: setattr(v, 'value', 2))
        t.start()
        assert v.wait(timeout=30) is True
        t.join()
        assert v.value == 2


def test_wait_releases_gil(kind):
    v = kind.Value('i', 0)
    counter = [0]
    done = threading.Event()

    def waiter():
        v.wait(timeout=30)
        done.set()
    t = threading.Thread(target=waiter)
    t.start()
    import time
    end = time.monotonic() + 0.2
    while time.monotonic() < end:
        counter[0] += 1
    assert counter[0] > 1000  # the main thread ran while the other waited
    v.value = 1
    assert done.wait(30)
    t.join(30)


def test_float_and_special(kind):
    v = kind.Value('d', float('inf'))
    assert math.isinf(v.value)
    v.value = float('nan')
    assert math.isnan(v.value)
    f = kind.Value('f', 0.1)
    assert f.value == pytest.approx(0.1)


def test_string_typestr_value(kind):
    s = kind.Value('16s', b'ab\x00c')
    assert s.value == b'ab\x00c'
    s.value = b'x' * 16
    with pytest.raises(ValueError):
        s.value = b'x' * 17
    assert s.value == b'x' * 16
