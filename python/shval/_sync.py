"""Condition, Event, Semaphore, BoundedSemaphore and Barrier on shval
(issue 12, item 7).

Built from shval values: atomic counters that waiters sleep on with
``wait()`` (a futex wait for a change, no polling), and shval's robust
locks.  They pickle by reference like every shval object, so they pass to
Process, Pool and through Queue under every start method.

Robustness: nothing here is owned by a process except a Condition's lock,
which is a robust shval lock: a participant that dies holding it does not
hang the others (the next acquirer gets OwnerDiedWarning and the lock).  A
participant that dies while waiting leaves at most one spurious wakeup
behind (a Condition's notify may hand it a token nobody takes; Condition
callers re-check their predicate, as with every condition variable).  A
Barrier party that dies before arriving is missed as with any barrier: give
``timeout`` to get BrokenBarrierError instead of waiting for ever.
"""
import threading
import time

from . import _shval

_monotonic = time.monotonic


def _remaining(deadline):
    if deadline is None:
        return None
    return max(0.0, deadline - _monotonic())


def _deadline(timeout):
    if timeout is None:
        return None
    return _monotonic() + max(0.0, timeout)


def _wait_change(counter, seen, deadline):
    """Sleep until counter differs from seen, or the deadline passes."""
    rem = _remaining(deadline)
    if rem is not None and rem <= 0:
        return False
    return counter.wait(rem, version=seen & 0xFFFFFFFFFFFFFFFF)


class Semaphore:
    """A counting semaphore shared between processes.

    Unlike shval.Lock, any thread or process may release it."""

    def __init__(self, value=1, *, ctx=None):
        if value < 0:
            raise ValueError('semaphore initial value must be >= 0')
        self._count = _shval.RawValue('q', value)
        self._max = None

    def acquire(self, block=True, timeout=None):
        """Take one unit; False if not block, or timeout, and none came."""
        deadline = _deadline(timeout)
        while True:
            c = self._count.value
            if c > 0:
                if self._count.cas(c, c - 1):
                    return True
                continue
            if not block:
                return False
            if not _wait_change(self._count, c, deadline) and \
                    deadline is not None and _remaining(deadline) <= 0:
                return False

    def release(self, n=1):
        """Give back n units (ValueError past a BoundedSemaphore's value)."""
        if n < 1:
            raise ValueError('n must be one or more')
        while True:
            c = self._count.value
            if self._max is not None and c + n > self._max:
                raise ValueError('semaphore or lock released too many times')
            if self._count.cas(c, c + n):
                return

    def get_value(self):
        """The number of units free now."""
        return self._count.value

    def __enter__(self):
        """acquire() (blocking)."""
        return self.acquire()

    def __exit__(self, *exc):
        """release()."""
        self.release()

    def __repr__(self):
        return '<shval.%s(value=%d)>' % (type(self).__name__, self.get_value())


class BoundedSemaphore(Semaphore):
    """A Semaphore that refuses to be released above its initial value."""

    def __init__(self, value=1, *, ctx=None):
        super().__init__(value)
        self._max = value


class Event:
    """An event flag shared between processes."""

    def __init__(self, *, ctx=None):
        self._flag = _shval.RawValue('q', 0)

    def is_set(self):
        """True if the flag is set."""
        return self._flag.value != 0

    def set(self):
        """Set the flag and wake every waiter."""
        self._flag.value = 1

    def clear(self):
        """Clear the flag."""
        self._flag.value = 0

    def wait(self, timeout=None):
        """Sleep until the flag is set; its state when the wait ends."""
        deadline = _deadline(timeout)
        while not self._flag.value:
            _wait_change(self._flag, 0, deadline)
            if deadline is not None and _remaining(deadline) <= 0:
                return bool(self._flag.value)
        return True

    def __repr__(self):
        return '<shval.Event %s>' % ('set' if self.is_set() else 'unset')


class Condition:
    """A condition variable shared between processes, over a shval Lock
    or RLock (a new RLock by default).

    notify(n) wakes up to n waiters (tokens handed out under the lock);
    wait() must be called with the lock held once (an RLock held more
    deeply is released that many times and re-taken)."""

    def __init__(self, lock=None, *, ctx=None):
        if lock is None:
            lock = _shval.RLock()
        if not isinstance(lock, (_shval.Lock, _shval.RLock)):
            raise TypeError('shval.Condition needs a shval.Lock or shval.RLock, '
                            'not %r' % (lock,))
        self._lock = lock
        self._waiting = _shval.RawValue('q', 0)   # under the lock
        self._tokens = _shval.RawValue('q', 0)    # atomic
        self.acquire = lock.acquire
        self.release = lock.release

    def __getstate__(self):
        return (self._lock, self._waiting, self._tokens)

    def __setstate__(self, state):
        self._lock, self._waiting, self._tokens = state
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self):
        """Take the lock."""
        return self._lock.__enter__()

    def __exit__(self, *exc):
        """Release the lock."""
        return self._lock.__exit__(*exc)

    def _release_all(self):
        depth = 0
        while True:
            try:
                self._lock.release()
            except (AssertionError, ValueError):
                break
            depth += 1
            if isinstance(self._lock, _shval.Lock):
                break
        if depth == 0:
            raise RuntimeError('cannot wait on un-acquired lock')
        return depth

    def _take_token(self):
        while True:
            t = self._tokens.value
            if t <= 0:
                return False
            if self._tokens.cas(t, t - 1):
                return True

    def wait(self, timeout=None):
        """Release the lock, sleep until notified or timeout, take the lock
        again; True if notified."""
        self._waiting.add(1)           # under the lock: no notify is lost
        try:
            depth = self._release_all()
        except BaseException:
            self._waiting.add(-1)
            raise
        deadline = _deadline(timeout)
        got = False
        try:
            while True:
                t = self._tokens.value
                if t > 0 and self._tokens.cas(t, t - 1):
                    got = True
                    break
                if t > 0:
                    continue
                _wait_change(self._tokens, t, deadline)
                if deadline is not None and _remaining(deadline) <= 0:
                    break
        finally:
            for _ in range(depth):
                self._lock.acquire()
            if not got:
                # notified between the timeout and the lock: take it
                got = self._take_token()
                if not got:
                    self._waiting.add(-1)
        return got

    def wait_for(self, predicate, timeout=None):
        """wait() until predicate() is true; its last result."""
        deadline = _deadline(timeout)
        result = predicate()
        while not result:
            rem = _remaining(deadline)
            if rem is not None and rem <= 0:
                break
            self.wait(rem)
            result = predicate()
        return result

    def notify(self, n=1):
        """Wake up to n of the waiting processes (call with the lock held)."""
        w = self._waiting.value
        k = min(n, w)
        if k > 0:
            self._waiting.add(-k)
            self._tokens.add(k)

    def notify_all(self):
        """Wake every waiting process (call with the lock held)."""
        self.notify(1 << 62)

    def __repr__(self):
        return '<shval.Condition(%r), %d waiting>' % (self._lock, self._waiting.value)


class BrokenBarrierError(threading.BrokenBarrierError):
    """A shval Barrier was aborted, or a wait on it timed out."""


class Barrier:
    """A barrier for parties processes (threading.Barrier's interface).

    The state is one atomic word: generation * 2**20 + arrived (parties
    < 2**20), so that arriving is one compare-and-swap and waiters sleep on
    the word; broken is a separate flag."""

    _SHIFT = 20

    def __init__(self, parties, action=None, timeout=None, *, ctx=None):
        if parties < 1 or parties >= 1 << self._SHIFT:
            raise ValueError('parties must be between 1 and %d' % ((1 << self._SHIFT) - 1))
        self._parties = parties
        self._action = action
        self._timeout = timeout
        self._state = _shval.RawValue('q', 0)
        self._broken = _shval.RawValue('q', 0)

    @property
    def parties(self):
        """The number of parties the barrier waits for."""
        return self._parties

    @property
    def n_waiting(self):
        """The number of parties waiting now."""
        return self._state.value & ((1 << self._SHIFT) - 1)

    @property
    def broken(self):
        """True if the barrier is broken (abort(), or a wait timed out)."""
        return self._broken.value != 0

    def abort(self):
        """Break the barrier: every waiter gets BrokenBarrierError."""
        self._broken.value = 1
        self._state.add(1 << 40 + self._SHIFT)   # wake the waiters

    def reset(self):
        """Mend the barrier and start a new generation."""
        self._broken.value = 0
        while True:
            s = self._state.value
            gen = (s >> self._SHIFT) + 1
            if self._state.cas(s, gen << self._SHIFT):
                return

    def wait(self, timeout=None):
        """Arrive and sleep until every party has; this party's arrival
        index (0 .. parties-1)."""
        if timeout is None:
            timeout = self._timeout
        mask = (1 << self._SHIFT) - 1
        while True:
            if self._broken.value:
                raise BrokenBarrierError
            s = self._state.value
            gen, arrived = s >> self._SHIFT, s & mask
            index = arrived
            if arrived + 1 == self._parties:
                if not self._state.cas(s, (gen + 1) << self._SHIFT):
                    continue
                if self._action:
                    try:
                        self._action()
                    except BaseException:
                        self.abort()
                        raise
                return index
            if self._state.cas(s, s + 1):
                break
        deadline = _deadline(timeout)
        while True:
            s = self._state.value
            if (s >> self._SHIFT) != gen:
                if self._broken.value:
                    raise BrokenBarrierError
                return index
            if self._broken.value:
                raise BrokenBarrierError
            _wait_change(self._state, s, deadline)
            if deadline is not None and _remaining(deadline) <= 0 and \
                    (self._state.value >> self._SHIFT) == gen:
                self.abort()
                raise BrokenBarrierError
