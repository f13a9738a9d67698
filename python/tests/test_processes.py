"""Several processes: exact counters, pickling by reference, shared locks."""
import multiprocessing
import os
import pickle

import pytest

import shval
from conftest import run, START_METHODS
from helpers import timed_incr, square, queue_consumer

N_PROCS = 4
RUN_SECONDS = 0.3   # each process increments this long after the common start


def run_together(ctx, kind, v, lock=None):
    """N_PROCS processes wait for one start signal, then increment v for
    RUN_SECONDS each, so they overlap for certain.  Returns (total of the
    increments they made, times a process saw another's increment between
    two of its own)."""
    ready = ctx.Semaphore(0)
    go = ctx.Event()
    out = ctx.Queue()
    ps = [ctx.Process(target=timed_incr, args=(kind, v, lock, ready, go, RUN_SECONDS, out))
          for _ in range(N_PROCS)]
    for p in ps:
        p.start()
    try:
        for _ in ps:
            assert ready.acquire(timeout=60), 'a child never started'
        go.set()
        res = [out.get(timeout=60) for _ in ps]
    finally:
        for p in ps:
            p.join(60)
            if p.is_alive():
                p.kill()
                p.join()
    assert all(p.exitcode == 0 for p in ps)
    return sum(n for n, _ in res), sum(o for _, o in res)


def check_exact(ctx, kind, v, lock=None):
    total, overlaps = run_together(ctx, kind, v, lock)
    assert overlaps > 0, 'the processes never interleaved: the test proves nothing'
    assert v.value == total, 'lost %d of %d updates' % (total - v.value, total)


@pytest.mark.parametrize('lock', [True, False])
def test_add_exact(ctx, lock):
    check_exact(ctx, 'add', shval.Value('q', 0, lock=lock))


def test_get_lock_idiom_exact(ctx):
    check_exact(ctx, 'get_lock', shval.Value('i', 0))


def test_with_value_exact(ctx):
    check_exact(ctx, 'with', shval.Value('d', 0))


def test_shared_lock_exact(ctx):
    lock = shval.RLock()
    check_exact(ctx, 'shared_lock', shval.Value('i', 0, lock=lock), lock)


@pytest.mark.parametrize('method', START_METHODS)
def test_pool_map(method):
    ctx = multiprocessing.get_context(method)
    vals = [shval.Value('i', i) for i in range(6)]
    with ctx.Pool(2) as pool:
        res = pool.map_async(square, vals).get(timeout=60)
    assert res == [i + 1 for i in range(6)]
    assert [v.value for v in vals] == [i + 1 for i in range(6)]


def test_pool_created_before_value():
    ctx = multiprocessing.get_context('fork')
    with ctx.Pool(2) as pool:
        v = shval.Value('i', 10)
        # the workers forked before v existed: it reaches them by fd
        assert pool.apply_async(square, (v,)).get(timeout=60) == 11
    assert v.value == 11


def test_queue(ctx):
    q = ctx.Queue()
    out = ctx.Queue()
    p = ctx.Process(target=queue_consumer, args=(q, out))
    p.start()
    v = shval.Value('i', 0)
    q.put(v)
    assert out.get(timeout=60) == 4242
    p.join(60)
    assert p.exitcode == 0
    assert v.value == 4242


def test_pickle_same_process():
    v = shval.Value('i', 5)
    a = shval.Array('c', b'abc')
    r = shval.RawValue('d', 1.5)
    lock = shval.Lock()
    g = shval.Value('i', 1, lock=lock)
    from multiprocessing.reduction import ForkingPickler
    v2, a2, r2, g2 = pickle.loads(ForkingPickler.dumps((v, a, r, g)))
    assert type(v2) is shval.Synchronized and v2.value == 5
    v2.value = 6
    assert v.value == 6
    assert a2.value == b'abc' and type(a2) is shval.SynchronizedString
    assert type(r2) is shval.SharedValue and r2.value == 1.5
    assert isinstance(g2.get_lock(), shval.Lock)
    with g2.get_lock():
        assert lock.acquire(False) is False  # the same lock
    l2 = pickle.loads(ForkingPickler.dumps(lock))
    with l2:
        pass


def _child_locked(lock, flag):
    if lock.acquire(timeout=0.01):
        lock.release()
        os._exit(1)   # should have been held by the parent
    os._exit(0)


def test_lock_across_processes(ctx):
    lock = shval.Lock()
    with lock:
        run(ctx, _child_locked, lock, None)


def test_value_created_in_child(ctx):
    from helpers import make_and_send
    q, ack = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=make_and_send, args=(q, ack))
    p.start()
    try:
        v, a = q.get(timeout=60)
        assert v.value == 77 and a[:] == [1.5, 2.5]
        ack.put(1)
        assert v.wait(timeout=30) is True
        deadline = __import__('time').monotonic() + 30
        while a[0] != 9.0 and __import__('time').monotonic() < deadline:
            a.wait(timeout=1)
        assert v.value == 78 and a[0] == 9.0
        ack.put(1)
    finally:
        p.join(60)
    assert p.exitcode == 0
