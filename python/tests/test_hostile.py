"""Issue 11, Python binding: hostile and careless input (items 2, 5, 7, 8, 10, 15)."""
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import shval
from conftest import child_env


def run_child(code, timeout=60):
    """Run code in a fresh interpreter; return (returncode, stdout, stderr)."""
    p = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], env=child_env(),
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


# ---- item 2: views of values in a read-only segment are read-only ----------

def test_readonly_segment_views_are_readonly(segname):
    with shval.Segment(segname, create=True) as seg:
        seg.value('x', 'q', 7)
        seg.array('a', 'i', [1, 2, 3])
        seg.value('s', '8s', b'abc')
    ro = shval.Segment(segname, readonly=True)
    try:
        for name in ('x', 'a', 's'):
            m = memoryview(ro[name])
            assert m.readonly, name
            with pytest.raises(TypeError):
                m.cast('B')[0] = 1
        # a writable view is refused outright (ctypes.from_buffer asks for one)
        import ctypes
        with pytest.raises(TypeError, match='not writable'):
            (ctypes.c_longlong).from_buffer(ro['x'])
        with pytest.raises(TypeError):
            import io
            io.BytesIO(b'12345678').readinto(ro['x'])
        assert memoryview(ro['a']).tolist() == [1, 2, 3]
    finally:
        ro.close()
    # the writable segment still gives writable views
    with shval.Segment(segname) as seg:
        m = memoryview(seg['x'])
        assert not m.readonly
        m.cast('B')[0] = 9
        assert seg['x'].value & 0xff == 9


def test_readonly_segment_write_through_view_raises_not_crashes(segname):
    with shval.Segment(segname, create=True) as seg:
        seg.value('x', 'q', 7)
    rc, out, err = run_child('''
        import shval
        seg = shval.Segment(%r, readonly=True)
        m = memoryview(seg['x']).cast('B')
        try:
            m[0] = 1
        except TypeError as e:
            print('refused:', e)
        else:
            print('written')
    ''' % segname)
    assert rc == 0, (rc, err)  # -11 would be the SIGSEGV of today
    assert out.startswith('refused:'), out
    with shval.Segment(segname) as seg:
        assert seg['x'].value == 7
