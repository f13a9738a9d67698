"""Issue 12, items 7-11: robust Condition/Event/Semaphore/Barrier, get_context,
get_obj() as a ctypes view, asyncio, releasing a Lock from elsewhere."""
import asyncio
import ctypes
import multiprocessing
import threading
import time
import warnings

import pytest

import shval
from conftest import TIMEOUT, run
import extras_targets as et


def _join(ps):
    for p in ps:
        p.join(TIMEOUT)
        assert p.exitcode == 0, p.exitcode


# ---- item 7 ----------------------------------------------------------------

def test_condition_notify_and_owner_death(ctx):
    cond = shval.Condition()
    flag = shval.RawValue('q', 0)
    woke = shval.RawValue('q', 0)
    ps = [ctx.Process(target=et.cond_waiter, args=(cond, flag, woke)) for _ in range(3)]
    for p in ps:
        p.start()
    # a participant dies holding the condition's lock: nobody hangs
    run(ctx, et.die_holding, cond._lock)
    deadline = time.monotonic() + TIMEOUT
    while cond._waiting.value < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', shval.OwnerDiedWarning)
        with cond:
            flag.value = 1
            cond.notify_all()
    _join(ps)
    assert woke.value == 3


def test_condition_notify_one_and_timeout():
    cond = shval.Condition(shval.Lock())
    with cond:
        t = time.monotonic()
        assert cond.wait(0.05) is False
        assert time.monotonic() - t >= 0.04
    got, flag = [], [False]

    def waiter():
        with cond:
            got.append(cond.wait_for(lambda: flag[0], 10))

    th = threading.Thread(target=waiter)
    th.start()
    while cond._waiting.value < 1:
        time.sleep(0.01)
    with cond:
        flag[0] = True
        cond.notify(1)
    th.join(TIMEOUT)
    assert got == [True]
    assert cond._waiting.value == 0 and cond._tokens.value == 0
    with pytest.raises(RuntimeError, match='un-acquired'):
        cond.wait(0.01)
    assert cond._waiting.value == 0
    rc = shval.Condition(shval.RLock())
    with rc, rc:                              # held twice: released twice
        assert rc.wait(0.01) is False
        rc.notify()                           # still held twice afterwards
    with pytest.raises(AssertionError):
        rc.release()


def test_standard_condition_refuses_but_threading_accepts():
    mc = multiprocessing.Condition(shval.Lock())
    with mc, pytest.raises(AttributeError, match='_semlock'):
        mc.wait(0.01)
    c = threading.Condition(shval.Lock())    # threads of one process (not RLock)
    with c:
        assert c.wait(0.01) is False


def test_semaphore_across_processes(ctx):
    sem = shval.Semaphore(0)
    got = shval.RawValue('q', 0)
    ps = [ctx.Process(target=et.sem_taker, args=(sem, got)) for _ in range(3)]
    for p in ps:
        p.start()
    run(ctx, et.release_other, sem)          # released by another process
    sem.release(2)
    _join(ps)
    assert got.value == 3 and sem.get_value() == 0
    assert sem.acquire(False) is False
    assert sem.acquire(timeout=0.02) is False
    b = shval.BoundedSemaphore(1)
    with pytest.raises(ValueError):
        b.release()


def test_event(ctx):
    ev = shval.Event()
    seen = shval.RawValue('q', 0)
    ps = [ctx.Process(target=et.event_waiter, args=(ev, seen)) for _ in range(2)]
    for p in ps:
        p.start()
    assert not ev.is_set() and ev.wait(0.02) is False
    ev.set()
    _join(ps)
    assert seen.value == 2 and ev.wait(0)
    ev.clear()
    assert not ev.is_set()


def test_barrier(ctx):
    b = shval.Barrier(3, timeout=TIMEOUT)
    out = shval.RawValue('q', 0)
    ps = [ctx.Process(target=et.barrier_party, args=(b, out)) for _ in range(2)]
    for p in ps:
        p.start()
    i = b.wait()
    _join(ps)
    assert out.value | (1 << i) == 0b111
    lone = shval.Barrier(2)
    with pytest.raises(shval.BrokenBarrierError):
        lone.wait(0.05)                      # the other party never came
    assert lone.broken


# ---- item 9 ----------------------------------------------------------------

@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_get_context(method):
    c = shval.get_context(method)
    assert isinstance(c, type(multiprocessing.get_context(method)))
    assert c.get_start_method() == method
    v = c.Value('i', 0)
    lock = c.Lock()
    assert isinstance(v, shval.Synchronized) and isinstance(lock, shval.Lock)
    assert isinstance(c.RLock(), shval.RLock) and isinstance(c.Event(), shval.Event)
    assert isinstance(c.RawArray('d', 3), shval.SharedArray)
    ps = [c.Process(target=et.ctx_child, args=(v, lock)) for _ in range(2)]
    for p in ps:
        p.start()
    _join(ps)
    assert v.value == 2
    with c.Pool(1) as pool:
        assert pool.apply(et.bump_after, (v, 0)) is None
    assert v.value == 3
    assert c.get_context('spawn') is shval.get_context('spawn')


def test_pool_teardown_keeps_its_held_lock_mapped(segname):
    """multiprocessing's Pool, torn down, takes its task queue's read lock
    (a shval Lock under shval's context) and never releases it.  The
    segment of that lock must stay mapped while the lock is held (glibc's
    robust list of the thread links the mutex); it was unmapped at the
    interpreter's exit, and the next lock operation of the thread (closing
    a named segment that a pickle had opened) wrote into it: SIGSEGV.  A
    fresh interpreter, so that its exit is part of the test."""
    import subprocess
    import sys
    import textwrap
    from conftest import child_env
    code = textwrap.dedent("""
        import pickle, sys, shval
        name = sys.argv[1]
        with shval.Segment(name, create=True) as seg:
            v = seg.value('x', 'i', 3)
            v2 = pickle.loads(pickle.dumps(v))   # opens the segment by name
            v2.value = 4
        c = shval.get_context('fork')
        w = c.Value('i', 0)
        with c.Pool(1) as pool:
            assert pool.apply(abs, (-5,)) == 5
        for _ in range(100):
            with w.get_lock():
                w.value += 1
        v2.value += 1
        print(w.value, v2.value)
        shval.unlink(name)
    """)
    p = subprocess.run([sys.executable, '-c', code, segname], env=child_env(),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
    assert p.stdout.split() == ['100', '5']


def test_import_shval_as_mp():
    import shval as mp
    for name in multiprocessing.__all__:
        assert hasattr(mp, name), name
    assert mp.Process is multiprocessing.Process
    assert mp.Value is shval.Value and mp.Condition is shval.Condition


# ---- item 8 ----------------------------------------------------------------

def test_get_obj_is_a_ctypes_view():
    class P(ctypes.Structure):
        _fields_ = [('x', ctypes.c_double), ('y', ctypes.c_int)]
    a = shval.Array('d', [1.0, 2.0, 3.0])
    o = a.get_obj()
    assert isinstance(o, ctypes.Array) and o._type_ is ctypes.c_double and len(o) == 3
    ctypes.memset(o, 0, ctypes.sizeof(o))
    assert a[:] == [0.0, 0.0, 0.0]
    ctypes.cast(ctypes.byref(o), ctypes.POINTER(ctypes.c_double))[1] = 5.0
    assert a[1] == 5.0
    libc = ctypes.CDLL(None)
    libc.memset(o, 0, 8)                     # passed to a C function
    s = shval.Value(P, 1.5, 2)
    assert type(s.get_obj()) is P and s.get_obj().y == 2
    assert isinstance(shval.Value('i', 4).get_obj(), ctypes.c_int)
    c = shval.Array('c', b'hi')
    assert c.get_obj().value == b'hi'
    del a                                    # the view keeps the memory alive
    assert o[1] == 5.0
    assert ctypes.addressof(o) != 0


# ---- item 10 ---------------------------------------------------------------

def test_asyncio_wait_and_lock(ctx):
    v = shval.Value('q', 0)
    lock = shval.Lock()
    ticks = []

    async def ticker():
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def main():
        t = asyncio.create_task(ticker())
        p = ctx.Process(target=et.bump_after, args=(v, 0.3))
        p.start()
        assert await v.wait_async(TIMEOUT) is True
        assert v.value == 1
        assert await v.wait_async(0.05) is False
        async with lock:
            async def other():
                async with lock:
                    return 'second'
            o = asyncio.create_task(other())
            await asyncio.sleep(0.05)
            assert not o.done()              # serialised within the loop
        assert await o == 'second'
        async with v:
            v.value += 1
        assert await lock.acquire_async(timeout=1)
        lock.release_async()
        t.cancel()
        await asyncio.get_running_loop().run_in_executor(None, p.join, TIMEOUT)
        return p.exitcode

    assert asyncio.run(main()) == 0
    assert v.value == 2
    assert len(ticks) >= 10                  # the loop kept running


# ---- item 11 ---------------------------------------------------------------

def test_release_from_another_thread_or_process(ctx):
    lock = shval.Lock()
    lock.acquire()
    err = []
    th = threading.Thread(target=lambda: err.append(pytest.raises(ValueError, lock.release)))
    th.start()
    th.join()
    assert 'not held by this thread' in str(err[0].value)
    assert 'shval.Semaphore' in str(err[0].value)
    run(ctx, et.release_in_child, lock)
    lock.release()
    with pytest.raises(AssertionError, match='not owned by thread'):
        shval.RLock().release()
