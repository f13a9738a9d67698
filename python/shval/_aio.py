"""asyncio (issue 12, item 10): ``await v.wait_async(timeout, version)`` and
``async with lock:`` / ``async with v:`` without blocking the event loop.

wait_async runs the futex wait in the loop's default executor in slices of
SLICE seconds, so that a cancelled wait frees its thread within a slice.
Locks are owned by threads (robust mutexes), so ``async with`` takes the lock
in the event loop's own thread: a non-blocking attempt, then asyncio.sleep
with a back-off from 1 ms to 50 ms between attempts (the loop keeps
running).  Coroutines of one loop are also serialised by an asyncio.Lock
per shval lock, since to the mutex they are all the same thread.
"""
import asyncio
import time

SLICE = 0.25

_guards = {}   # id(lock) -> [lock, asyncio.Lock, users]


async def wait_async(self, timeout=None, version=None):
    """Await a change of the value, as wait(timeout, version)."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    while True:
        rem = SLICE if deadline is None else min(SLICE, max(0.0, deadline - time.monotonic()))
        if version is None:
            changed = await loop.run_in_executor(None, self.wait, rem)
        else:
            changed = await loop.run_in_executor(None, lambda: self.wait(rem, version=version))
        if changed:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


def _lock_of(obj):
    return obj.get_lock() if hasattr(obj, 'get_lock') else obj


async def acquire_async(self, timeout=None):
    """Acquire without blocking the loop; False on timeout."""
    lock = _lock_of(self)
    g = _guards.get(id(lock))
    if g is None:
        g = _guards[id(lock)] = [lock, asyncio.Lock(), 0]
    g[2] += 1
    try:
        if timeout is None:
            await g[1].acquire()
        else:
            await asyncio.wait_for(g[1].acquire(), timeout)
    except BaseException:
        _unuse(lock, g)
        raise
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.001
    try:
        while not lock.acquire(False):
            if deadline is not None and time.monotonic() >= deadline:
                g[1].release()
                _unuse(lock, g)
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
    except BaseException:
        g[1].release()
        _unuse(lock, g)
        raise
    return True


def _unuse(lock, g):
    g[2] -= 1
    if g[2] == 0:
        _guards.pop(id(lock), None)


def release_async(self):
    """Release a lock taken with acquire_async() (or ``async with``)."""
    lock = _lock_of(self)
    lock.release()
    g = _guards.get(id(lock))
    if g is not None:
        g[1].release()
        _unuse(lock, g)


async def __aenter__(self):
    await acquire_async(self)
    return self


async def __aexit__(self, *exc):
    release_async(self)
