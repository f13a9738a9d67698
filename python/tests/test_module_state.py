"""The module's structure (issue 13): heap types with GC support, module
state (multi-phase init)."""
import ctypes
import gc
import os
import subprocess
import sys
import textwrap

import shval
from conftest import child_env

HEAPTYPE = 1 << 9
HAVE_GC = 1 << 14
IMMUTABLE = 1 << 8

TYPES = [shval.Segment, shval.SharedValue, shval.Synchronized,
         shval.SharedArray, shval.SynchronizedArray,
         shval.SynchronizedString, shval.Lock, shval.RLock]


def test_heap_types_with_gc():
    for t in TYPES:
        assert t.__flags__ & HEAPTYPE, t
        assert t.__flags__ & HAVE_GC, t
        assert t.__flags__ & IMMUTABLE, t
        assert t.__module__ == 'shval'
    for t in (shval.SharedValue, shval.Synchronized, shval.SharedArray):
        try:
            t()
        except TypeError as e:
            assert 'cannot create' in str(e)
        else:
            raise AssertionError('%r could be instantiated' % t)
    v = shval.Value('i', 1)
    assert gc.is_tracked(v) and gc.is_tracked(v.get_lock())


def test_cycle_through_ctype_is_collected(segname):
    class C(ctypes.Structure):
        _fields_ = [('x', ctypes.c_int)]

    with shval.Segment(segname, create=True) as seg:
        v = seg.value('cyc', C)
        assert gc.is_tracked(v)
        C.ref = v  # v -> C (its ctype) -> v
        obj = v.get_obj()  # a view whose `base` is v
        C.obj = obj  # obj -> C (ctype), obj -> v (base)
        del v, obj, C
        gc.collect()
        left = [o for o in gc.get_objects()
                if isinstance(o, shval.SharedValue) and o.name == 'cyc']
        assert left == []
        # the entry outlives its collected handles
        assert seg['cyc'].x == 0
    shval.unlink(segname)



def test_reimport_makes_a_new_state():
    code = textwrap.dedent('''
        import sys, importlib
        import shval._shval as a
        del sys.modules['shval._shval']
        b = importlib.import_module('shval._shval')
        assert a is not b
        assert a.Error is not b.Error and a.Lock is not b.Lock
        va, vb = a.Value('i', 1), b.Value('i', 2)
        la, lb = a.Lock(), b.Lock()      # distinct names in one segment
        assert la.acquire() and lb.acquire()
        assert isinstance(va, a.Synchronized) and not isinstance(va, b.Synchronized)
        with va.get_lock():
            va.value += 1
        assert (va.value, vb.value) == (2, 2)
        print('ok')
    ''')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=60, env=child_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'ok'
