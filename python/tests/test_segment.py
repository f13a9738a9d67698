"""Named segments: values for unrelated processes, C interop.  Every test
runs on a local and on a Redis segment (the anysegname fixture, conftest.py)."""
import ctypes
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import child_env

import shval
from conftest import run
from helpers import named_child


def test_segment_basics(anysegname):
    with shval.Segment(anysegname, create=True) as seg:
        assert seg.name == anysegname
        c = seg.value('counter', 'q', 5)
        assert c.value == 5 and isinstance(c, shval.Synchronized)
        again = seg.value('counter', 'q', 99)   # exists: init ignored
        assert again.value == 5
        r = seg.value('raw', 'd', 1.5, lock=False)
        assert type(r) is shval.SharedValue
        arr = seg.array('arr', 'i', [1, 2, 3])
        assert arr[:] == [1, 2, 3]
        s = seg.value('sym', '16s', b'ABC')
        assert s.value == b'ABC'
        st = seg.value('pt', 'x:d y:d')
        st.x = 1
        assert st.value == {'x': 1.0, 'y': 0.0}
        assert sorted(seg.names()) == ['arr', 'counter', 'pt', 'raw', 'sym']
        assert 'counter' in seg and 'nope' not in seg
        assert seg['counter'].value == 5
        with pytest.raises(KeyError):
            seg['nope']
        with pytest.raises(KeyError):
            seg.value('nope')
        with pytest.raises(TypeError):
            seg.value('counter', 'd')        # type mismatch
        del seg['raw']
        assert 'raw' not in seg
        with pytest.raises(KeyError):
            del seg['raw']
        lk = seg.lock('L')
        v = shval.Value  # noqa: F841
        with lk:
            pass
        assert isinstance(seg['L'], shval.RLock)
    assert seg.closed
    with pytest.raises(ValueError):
        seg.names()
    # values keep working after their segment object is closed
    assert c.value == 5


def test_segment_errors(anysegname):
    with pytest.raises(FileNotFoundError):
        shval.Segment(anysegname)
    with pytest.raises(ValueError):
        shval.Segment('/bad/name', create=True)
    with pytest.raises(FileNotFoundError):
        shval.unlink(anysegname)


def test_named_across_processes(ctx, anysegname):
    with shval.Segment(anysegname, create=True) as seg:
        v = seg.value('counter', 'i', 0, lock=False)
        ps = [ctx.Process(target=named_child, args=(anysegname, 500)) for _ in range(3)]
        for p in ps:
            p.start()
        for p in ps:
            p.join(60)
            assert p.exitcode == 0
        assert v.value == 1500
        assert seg['from_child'].value == 7


def test_named_pickles_by_name(anysegname):
    import pickle
    with shval.Segment(anysegname, create=True) as seg:
        v = seg.value('x', 'i', 3)
        v2 = pickle.loads(pickle.dumps(v))
        v2.value = 4
        assert v.value == 4


def test_unpickled_segment_released_with_its_values(segname):
    """A named segment opened to unpickle a value is the same Segment for
    every value unpickled while one lives, and is closed (unmapped) when
    the last of them goes: unpickling once does not keep the segment (its
    memory, after an unlink) for the rest of the process's life."""
    import gc
    import pickle

    def mapped():
        with open('/proc/self/maps') as f:
            return sum(1 for line in f if segname in line)
    with shval.Segment(segname, create=True) as seg:
        blob = pickle.dumps(seg.value('x', 'i', 3))
        gc.collect()
    assert mapped() == 0
    v2 = pickle.loads(blob)
    v3 = pickle.loads(blob)
    assert (v2.value, v3.value) == (3, 3)
    assert mapped() == 1                      # one Segment for both
    del v2
    gc.collect()
    assert mapped() == 1 and v3.value == 3
    del v3
    gc.collect()
    assert mapped() == 0
    v4 = pickle.loads(blob)                   # opened again
    assert v4.value == 3 and mapped() == 1


def test_unrelated_process(anysegname):
    """A separately started interpreter attaches by name."""
    with shval.Segment(anysegname, create=True) as seg:
        v = seg.value('greeting', '32s', b'hi')
        code = textwrap.dedent('''
            import shval, sys
            with shval.Segment(sys.argv[1]) as seg:
                g = seg['greeting']
                assert g.value == b'hi', g.value
                g.value = b'hello from ' + str(__import__('os').getpid()).encode()
        ''')
        subprocess.run([sys.executable, '-c', code, anysegname], check=True, timeout=60,
                       env=child_env())
        assert v.value.startswith(b'hello from ')


def _libshval():
    path = os.environ.get('SHVAL_LIBRARY')
    if not path or not os.path.exists(path):
        pytest.skip('SHVAL_LIBRARY not set (run through ctest)')
    lib = ctypes.CDLL(path)
    lib.shval_seg_open.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_void_p,
                                   ctypes.POINTER(ctypes.c_void_p)]
    lib.shval_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint,
                                 ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
    lib.shval_find.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                               ctypes.POINTER(ctypes.c_void_p)]
    lib.shval_set_i64.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.shval_get_f64.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_double)]
    lib.shval_close.argtypes = [ctypes.c_void_p]
    lib.shval_seg_close.argtypes = [ctypes.c_void_p]
    return lib


def test_c_interop(anysegname):
    lib = _libshval()
    seg = ctypes.c_void_p()
    assert lib.shval_seg_open(anysegname.encode(), 1, None, ctypes.byref(seg)) == 0
    h = ctypes.c_void_p()
    assert lib.shval_create(seg, b'fromc', b'q', 0x300, None, 0, ctypes.byref(h)) == 0
    assert lib.shval_set_i64(h, -77) == 0
    with shval.Segment(anysegname) as pseg:
        v = pseg['fromc']
        assert v.value == -77 and v.type == 'q'
        assert type(v) is shval.SharedValue      # atomic: no lock
        pv = pseg.value('frompy', 'd', 2.5)
        h2 = ctypes.c_void_p()
        assert lib.shval_find(seg, b'frompy', b'd', ctypes.byref(h2)) == 0
        out = ctypes.c_double()
        assert lib.shval_get_f64(h2, ctypes.byref(out)) == 0
        assert out.value == 2.5
        assert pv.value == 2.5
        lib.shval_close(h2)
    lib.shval_close(h)
    lib.shval_seg_close(seg)
