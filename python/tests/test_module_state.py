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


def test_every_public_callable_has_a_docstring_and_a_signature():
    """Issue 13: a docstring and a text signature on every public callable,
    C methods and getsets and the ones __init__.py adds alike."""
    import inspect
    import shval._shval as m
    no_doc, no_sig = [], []

    def check(name, obj, callable_):
        if not getattr(obj, '__doc__', None):
            no_doc.append(name)
        if callable_:
            try:
                inspect.signature(obj)
            except (TypeError, ValueError):
                no_sig.append(name)

    for name in dir(shval):
        obj = getattr(shval, name)
        if (name.startswith('_') or inspect.ismodule(obj) or
                not (getattr(obj, '__module__', None) or '').startswith('shval')):
            continue  # multiprocessing's names, re-exported as they are
        if isinstance(obj, type):
            check(name, obj, False)
            for an, a in vars(obj).items():
                if an.startswith('_') and an not in ('__enter__', '__exit__'):
                    continue
                bound = getattr(obj, an)
                check(name + '.' + an, bound, callable(bound))
        else:
            check(name, obj, callable(obj))
    for name in dir(m):
        if not name.startswith('_') and callable(getattr(m, name)):
            check('_shval.' + name, getattr(m, name),
                  not isinstance(getattr(m, name), type))
    assert not no_doc, no_doc
    assert not no_sig, no_sig
