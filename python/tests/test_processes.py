"""Several processes: exact counters, pickling by reference, shared locks."""
import multiprocessing
import os
import pickle

import pytest

import shval
from conftest import run, START_METHODS
from helpers import (add_n, locked_incr, lock_incr, with_incr, square,
                     queue_consumer, after_barrier)

N_PROCS = 4
N_ITERS = 2000


def _many(ctx, target, *args):
    # The children start their loops together: started one by one (spawn
    # takes a while), they would run one after the other and a lost update
    # could not happen (`make mutants` showed these tests passing with
    # add() or `with v.get_lock()` not locking at all).
    start = ctx.Barrier(N_PROCS)
    ps = [ctx.Process(target=after_barrier, args=(start, target) + args)
          for _ in range(N_PROCS)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(120)
    for p in ps:
        if p.is_alive():
            p.kill()
            pytest.fail('child timed out')
        assert p.exitcode == 0


@pytest.mark.parametrize('lock', [True, False])
def test_add_exact(ctx, lock):
    v = shval.Value('q', 0, lock=lock)
    _many(ctx, add_n, v, N_ITERS)
    assert v.value == N_PROCS * N_ITERS


def test_get_lock_idiom_exact(ctx):
    v = shval.Value('i', 0)
    _many(ctx, locked_incr, v, N_ITERS)
    assert v.value == N_PROCS * N_ITERS


def test_with_value_exact(ctx):
    v = shval.Value('d', 0)
    _many(ctx, with_incr, v, N_ITERS // 4)
    assert v.value == N_PROCS * (N_ITERS // 4)


def test_shared_lock_exact(ctx):
    lock = shval.RLock()
    v = shval.Value('i', 0, lock=lock)
    _many(ctx, lock_incr, lock, v, N_ITERS)
    assert v.value == N_PROCS * N_ITERS


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
