"""Errors, owner death, interrupts.
The tests taking `anysegname` run on a local and on a Redis segment."""
import os
import signal
import threading
import time
import warnings

import pytest

import shval
from conftest import run
from helpers import (hold_lock_and_die, hold_value_lock_and_die, hold_lock,
                     die_in_section, acquire_or_fail, hold_lock_stamped,
                     Point)


def test_error_mapping(anysegname):
    with shval.Segment(anysegname, create=True) as seg:
        seg.value('s', '4s')
        with pytest.raises(KeyError) as ei:
            seg['missing']
        assert ei.value.shval_errname == 'SHVAL_ENOTFOUND'
        with pytest.raises(TypeError) as ei:
            seg.value('s', 'q')
        assert 'q' in str(ei.value) and ei.value.shval_errname == 'SHVAL_ETYPE'
        with pytest.raises(ValueError):
            seg['s'].value = b'toolong'
        with pytest.raises(ValueError):
            seg.value('bad name', 'q')
        with pytest.raises(TypeError):
            seg.value('x', 'not a type!')
    with pytest.raises(FileNotFoundError) as ei:
        shval.Segment(anysegname + 'missing')
    assert ei.value.errno == 2


def test_stale_value(anysegname):
    with shval.Segment(anysegname, create=True) as seg:
        v = seg.value('v', 'i', 1)
        del seg['v']
        with pytest.raises(shval.Error):
            v.value


def test_lock_release_errors():
    r = shval.RLock()
    with pytest.raises(AssertionError):
        r.release()
    lk = shval.Lock()
    with pytest.raises(ValueError):
        lk.release()
    assert lk.acquire() is True
    assert lk.acquire(False) is False
    assert lk.acquire(timeout=0.05) is False   # as multiprocessing
    with pytest.raises(shval.Error, match='already held'):
        lk.acquire()                            # instead of hanging forever
    lk.release()
    assert r.acquire() and r.acquire()
    r.release()
    r.release()


def test_owner_died_shared_lock():
    ctx = __import__('multiprocessing').get_context('fork')
    lock = shval.Lock()
    run(ctx, hold_lock_and_die, lock)
    with pytest.warns(shval.OwnerDiedWarning):
        assert lock.acquire(timeout=10) is True
    lock.release()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert lock.acquire(timeout=10) is True   # recovered: no warning
        lock.release()


def test_owner_died_value_lock():
    ctx = __import__('multiprocessing').get_context('fork')
    v = shval.Value('i', 1)
    run(ctx, hold_value_lock_and_die, v)
    assert v.value == 1       # the dead writer's change was rolled back
    with pytest.warns(shval.OwnerDiedWarning):
        assert v.get_lock().acquire(timeout=10) is True
    assert v.value == 1       # still rolled back, now under our lock
    v.value = 2
    v.release()
    assert v.value == 2


def test_owner_died_implicit_recovery():
    """A plain write after an owner died recovers, with the warning."""
    ctx = __import__('multiprocessing').get_context('fork')
    v = shval.Value('i', 1)
    run(ctx, hold_value_lock_and_die, v)
    with pytest.warns(shval.OwnerDiedWarning):
        assert v.add(1) == 2  # from the rolled-back 1, not the dead 99
    assert v.value == 2


def test_owner_died_warning_as_error():
    ctx = __import__('multiprocessing').get_context('fork')
    lock = shval.Lock()
    run(ctx, hold_lock_and_die, lock)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with pytest.raises(shval.OwnerDiedWarning):
            lock.acquire()
    assert lock.acquire(False) is True   # not left held by us
    lock.release()


def _interrupt_after(delay):
    t = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    t.start()
    return t


def test_keyboard_interrupt_in_wait():
    v = shval.Value('i', 0)
    t = _interrupt_after(0.2)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        v.wait()
    assert time.monotonic() - start < 10
    t.join()


def test_keyboard_interrupt_in_lock():
    ctx = __import__('multiprocessing').get_context('fork')
    lock = shval.Lock()
    started = ctx.Event()
    p = ctx.Process(target=hold_lock, args=(lock, started, 30))
    p.start()
    try:
        assert started.wait(30)
        t = _interrupt_after(0.2)
        with pytest.raises(KeyboardInterrupt):
            lock.acquire()
        t.join()
    finally:
        p.kill()
        p.join(30)


def test_lock_blocking_releases_gil():
    lock = shval.Lock()
    lock.acquire()
    got = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.3)))
    t.start()
    n = 0
    end = time.monotonic() + 0.1
    while time.monotonic() < end:
        n += 1
    t.join(30)
    assert n > 1000 and got == [False]
    lock.release()


def test_nonrecursive_lock_guarded_value_inside_lock():
    lock = shval.Lock()
    v = shval.Value('i', 0, lock=lock)
    a = shval.Array('i', 4, lock=lock)
    with lock:               # multiprocessing would deadlock here
        v.value += 1
        a[::2] = [1, 1]
        assert v.add(1) == 2
    assert v.value == 2 and a[:] == [1, 0, 1, 0]


def test_keyboard_interrupt_in_blocked_write():
    ctx = __import__('multiprocessing').get_context('fork')
    v = shval.Value('i', 0)
    started = ctx.Event()
    p = ctx.Process(target=hold_lock, args=(v.get_lock(), started, 30))
    p.start()
    try:
        assert started.wait(30)
        assert v.value == 0          # reads never block
        t = _interrupt_after(0.2)
        with pytest.raises(KeyboardInterrupt):
            v.value = 1
        t.join()
    finally:
        p.kill()
        p.join(30)


# ---- Owner death mid-section: rollback and the warning, on every path ----
#
# A child takes the lock, writes without committing and dies (os._exit, or
# SIGKILL).  The parent must see the last committed state -- before it
# writes anything itself -- and the first operation that takes the lock,
# whichever it is (add, a write, cas, exchange, with v.get_lock(), ...),
# must report OwnerDiedWarning exactly as an explicit acquire does.

FORK = __import__('multiprocessing').get_context('fork')

# op -> (call, expected result, expected value afterwards); the value was 1
LOCK_PATH_OPS = {
    'add': (lambda v: v.add(1), 2, 2),
    'sub_add': (lambda v: v.add(-1), 0, 0),
    'set': (lambda v: setattr(v, 'value', 5), None, 5),
    'cas': (lambda v: v.cas(1, 6), True, 6),
    'exchange': (lambda v: v.exchange(7), 1, 7),
    'get_lock': (lambda v: _read_inside(v.get_lock(), v), 1, 1),
    'with_value': (lambda v: _read_inside(v, v), 1, 1),
    'acquire': (lambda v: _acquire_release(v), True, 1),
}


def _read_inside(cm, v):
    with cm:
        return v.value


def _acquire_release(v):
    r = v.acquire()
    v.release()
    return r


def _die_holding(lock, writes, how):
    p = FORK.Process(target=die_in_section, args=(lock, writes, how))
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        p.join()
        pytest.fail('child process timed out')
    assert p.exitcode == (-signal.SIGKILL if how == 'kill' else 0)


@pytest.mark.parametrize('how', ['exit', 'kill'])
@pytest.mark.parametrize('op', sorted(LOCK_PATH_OPS))
def test_owner_died_every_lock_path(op, how):
    call, result, after = LOCK_PATH_OPS[op]
    v = shval.Value('i', 1)
    _die_holding(v.get_lock(), [(v, None, 99)], how)
    assert v.value == 1           # readers see the last committed state
    with pytest.warns(shval.OwnerDiedWarning):
        assert call(v) == result  # computed from the rolled-back value
    assert v.value == after
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert v.add(1) == after + 1   # recovered once: no second warning
    run(FORK, acquire_or_fail, v.get_lock(), 10)   # and nobody holds it


@pytest.mark.parametrize('op', ['add', 'set', 'get_lock'])
def test_owner_died_warning_as_error_every_lock_path(op):
    """With the warning turned into an error the operation is not done and
    the lock is not left held -- as for an explicit acquire."""
    call = LOCK_PATH_OPS[op][0]
    v = shval.Value('i', 1)
    _die_holding(v.get_lock(), [(v, None, 99)], 'exit')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with pytest.raises(shval.OwnerDiedWarning):
            call(v)
        assert v.value == 1                 # rolled back, op not done
        run(FORK, acquire_or_fail, v.get_lock(), 10)
        assert v.add(1) == 2                # no second warning


def test_owner_died_rollback_array_struct_string():
    # Reads of arrays, structs and strings take the lock in this binding
    # (scalars use the seqlock), so the first read may be what reports the
    # death: check the rolled-back state inside the warns() block.
    a = shval.Array('i', [1, 2, 3, 4, 5, 6, 7, 8])
    _die_holding(a.get_lock(), [(a, slice(None), [99] * 8), (a, 3, -1)], 'kill')
    with pytest.warns(shval.OwnerDiedWarning):
        assert a[:] == [1, 2, 3, 4, 5, 6, 7, 8]
        a[0] += 10
    assert a[:] == [11, 2, 3, 4, 5, 6, 7, 8]

    p = shval.Value(Point, 1.5, 2.5)
    _die_holding(p.get_lock(), [(p, 'x', 99.0), (p, 'y', 98.0)], 'exit')
    with pytest.warns(shval.OwnerDiedWarning):
        with p:
            assert (p.x, p.y) == (1.5, 2.5)
    assert (p.x, p.y) == (1.5, 2.5)

    s = shval.Array('c', b'committed')
    _die_holding(s.get_lock(), [(s, None, b'dirty')], 'kill')
    with pytest.warns(shval.OwnerDiedWarning):
        assert s.value == b'committed'
        s.value = s.value.upper()
    assert s.value == b'COMMITTED'


def test_owner_died_rollback_shared_lock():
    """Every value guarded by a shared lock goes back, and any of them --
    or the lock -- reports the death once."""
    for first in ('lock', 'v1', 'v2'):
        lock = shval.Lock()
        v1 = shval.Value('i', 1, lock=lock)
        v2 = shval.Value('d', 2.5, lock=lock)
        _die_holding(lock, [(v1, None, 99), (v2, None, 9.5)], 'kill')
        assert (v1.value, v2.value) == (1, 2.5)
        with pytest.warns(shval.OwnerDiedWarning):
            if first == 'lock':
                with lock:
                    assert (v1.value, v2.value) == (1, 2.5)
            elif first == 'v1':
                assert v1.add(1) == 2
            else:
                assert v2.add(1.0) == 3.5
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            assert v1.add(1) == (3 if first == 'v1' else 2)
            assert v2.add(1.0) == (4.5 if first == 'v2' else 3.5)


# ---- Blocking on a held lock releases the GIL, on every lock path ----

BLOCKING_OPS = {   # op -> (which object's lock the child holds, call)
    'add': ('v', lambda o: o.add(1)),
    'add_float': ('d', lambda o: o.add(1.5)),
    'set': ('v', lambda o: setattr(o, 'value', 5)),
    'cas': ('v', lambda o: o.cas(0, 6)),
    'exchange': ('v', lambda o: o.exchange(7)),
    'get_lock': ('v', lambda o: _read_inside(o.get_lock(), o)),
    'with_value': ('v', lambda o: _read_inside(o, o)),
    'array_item': ('a', lambda o: o.__setitem__(1, 3)),
    'array_slice': ('a', lambda o: o.__setitem__(slice(None, None, 2), [1, 1])),
    'shared_lock_add': ('s', lambda o: o.add(1)),
}


@pytest.mark.parametrize('op', sorted(BLOCKING_OPS))
def test_blocked_lock_path_releases_gil(op):
    """A child holds the lock; a thread of ours blocks in op; our main
    thread must keep running meanwhile (a call that waits for the lock
    with the GIL held would freeze it until the op returns).  The child
    lets go once the main thread has run 20 times while the op was
    surely waiting (at most 10 s), not after a fixed 0.6 s: on a loaded
    machine the main thread once got no CPU in that time."""
    which, call_op = BLOCKING_OPS[op]
    if which == 's':
        lock = shval.RLock()
        obj = shval.Value('i', 0, lock=lock)
    else:
        obj = {'v': lambda: shval.Value('i', 0), 'd': lambda: shval.Value('d', 0),
               'a': lambda: shval.Array('i', 4)}[which]()
        lock = obj.get_lock()
    started = FORK.Event()
    released = FORK.Value('d', 0.0, lock=False)
    ticked = FORK.Event()
    p = FORK.Process(target=hold_lock_stamped,
                     args=(lock, started, 10.0, released, ticked))
    p.start()
    try:
        assert started.wait(30)
        stamp = {}

        def blocked():
            stamp['call'] = time.monotonic()
            call_op(obj)
            stamp['done'] = time.monotonic()
        t = threading.Thread(target=blocked)
        t.start()
        ticks = []
        late = 0  # ticks at least 0.25 s after the call
        while t.is_alive():
            x = time.monotonic()
            ticks.append(x)
            if late <= 20 and 'call' in stamp and x > stamp['call'] + 0.25:
                late += 1
                if late > 20:
                    ticked.set()
        t.join(30)
        assert 'done' in stamp
        call, done, rel = stamp['call'], stamp['done'], released.value
        assert rel - call > 0.2 and done >= rel, \
            'the op did not block (%.3f s)' % (done - call)
        # Ticks while the op was surely inside its wait: from 0.1 s after
        # the call (a GIL switch interval is 5 ms) to the lock's release
        # (after which the op may return and let us run before it stamps
        # 'done').
        during = sum(1 for x in ticks if call + 0.1 < x < rel)
        assert during > 10, 'main thread frozen while %s blocked (%d ticks in %.3f s)' % (
            op, during, rel - call - 0.1)
    finally:
        p.join(30)
        if p.is_alive():
            p.kill()
            p.join()
    assert p.exitcode == 0
