"""Errors, owner death, interrupts."""
import os
import signal
import threading
import time
import warnings

import pytest

import shval
from conftest import run
from helpers import hold_lock_and_die, hold_value_lock_and_die, hold_lock


def test_error_mapping(segname):
    with shval.Segment(segname, create=True) as seg:
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
        shval.Segment(segname + 'missing')
    assert ei.value.errno == 2


def test_stale_value(segname):
    with shval.Segment(segname, create=True) as seg:
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
    v.value = 2
    v.release()
    assert v.value == 2


def test_owner_died_implicit_recovery():
    """A plain write after an owner died recovers, with the warning."""
    ctx = __import__('multiprocessing').get_context('fork')
    v = shval.Value('i', 1)
    run(ctx, hold_value_lock_and_die, v)
    with pytest.warns(shval.OwnerDiedWarning):
        v.value = 5
    assert v.value == 5
    assert v.add(1) == 6


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
