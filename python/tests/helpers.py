"""Child-process targets (module level so that spawn/forkserver can import them)."""
import ctypes
import os
import signal
import time

import shval


class Foo(ctypes.Structure):
    _fields_ = [('x', ctypes.c_int), ('y', ctypes.c_double), ('z', ctypes.c_longlong)]


class Point(ctypes.Structure):
    _fields_ = [('x', ctypes.c_double), ('y', ctypes.c_double)]


def set_values(values, news):
    for v, new in zip(values, news):
        v.value = new


def prefix_sums(arr):
    for i in range(1, len(arr)):
        arr[i] += arr[i - 1]


def double_all(x, y, foo, arr, string):
    x.value *= 2
    y.value *= 2
    foo.x *= 2
    foo.y *= 2
    string.value *= 2
    for i in range(len(arr)):
        arr[i] *= 2


def square(v):
    v.add(1)
    return v.value


def queue_consumer(q, out):
    v = q.get(timeout=30)
    v.value = 4242
    out.put(v.value)


def hold_lock_and_die(lock):
    lock.acquire()
    os._exit(0)


def hold_value_lock_and_die(v):
    v.get_lock().acquire()
    v.value = 99  # committed: inside our own section
    os._exit(0)


def hold_lock(lock, started, seconds):
    with lock:
        started.set()
        time.sleep(seconds)


def set_later(v, new, delay):
    time.sleep(delay)
    v.value = new


def named_child(segname, n):
    with shval.Segment(segname) as seg:
        v = seg['counter']
        for _ in range(n):
            v.add(1)
        seg.value('from_child', 'q', 7)


def make_and_send(q, ack):
    v = shval.Value('i', 77)
    a = shval.Array('d', [1.5, 2.5])
    q.put((v, a))
    ack.get(timeout=30)   # stay alive until the parent has attached
    v.value = 78          # the parent sees it: same memory
    a[0] = 9.0
    ack.get(timeout=30)


# ---- owner death mid-section (test_errors.py) ----

def die_in_section(lock, writes, how):
    """Take lock, make uncommitted changes, die without releasing it.
    writes: list of (object, key, new) -- key None sets .value, else
    obj[key] = new or setattr for a str key on a struct."""
    lock.acquire()
    for obj, key, new in writes:
        if key is None:
            obj.value = new
        elif isinstance(key, str):
            setattr(obj, key, new)
        else:
            obj[key] = new
    if how == 'kill':
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(30)
    os._exit(0)


def acquire_or_fail(lock, timeout):
    """Exit 0 if lock can be taken within timeout (so nobody holds it)."""
    if not lock.acquire(timeout=timeout):
        os._exit(3)
    lock.release()
    os._exit(0)


# ---- exact totals with certain overlap (test_processes.py) ----

def _start_together(ready, go):
    ready.release()
    if not go.wait(60):
        raise RuntimeError('never got the start signal')


def timed_incr(kind, v, lock, ready, go, seconds, out):
    """Increment v for `seconds` after the common start; put (increments,
    overlaps) on out, overlaps = times another process's increment came
    between two of ours (proof that the processes ran interleaved)."""
    _start_together(ready, go)
    n = overlaps = 0
    last = None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if kind == 'add':
            new = v.add(1)
        elif kind == 'get_lock':
            with v.get_lock():
                new = v.value + 1
                v.value = new
        elif kind == 'with':
            with v:
                new = v.value + 1
                v.value = new
        elif kind == 'shared_lock':
            with lock:
                new = v.value + 1
                v.value = new
        elif kind == 'unlocked':   # the broken idiom: must lose updates
            new = v.value + 1
            v.value = new
        else:
            raise ValueError(kind)
        if last is not None and new != last + 1:
            overlaps += 1
        last = new
        n += 1
    out.put((n, overlaps))


# ---- wake-ups across processes (test_wake.py) ----

def wake_child(ping, pong, stamps, rounds, timeout, out):
    """Wait for ping == r, answer pong = r, for r in 1..rounds.
    stamps: (ping's stamp, pong's stamp).  Puts 'ready' first: the parent
    starts round 1 only then, so a slow start (spawn imports the test's
    modules; seconds on a loaded machine) is not taken for a missed
    wake-up."""
    out.put('ready')
    try:
        wake_side(ping, pong, stamps, rounds, timeout, answer=True)
    except AssertionError as e:
        out.put(str(e))
        raise
    out.put(None)


NO_ANSWER_S = 60.0   # a round may take this long on a loaded machine
MISSED_MARGIN_S = 0.5


def new_stamp():
    """[round, CLOCK_MONOTONIC time just after that round's write returned]
    of one side, under the array's lock so that both fields belong to one
    round."""
    return shval.Array('d', 2)


def _stamp(st, r):
    with st.get_lock():
        st[0] = r
        st[1] = time.monotonic()   # CLOCK_MONOTONIC, as the library's


def _read_stamp(st):
    with st.get_lock():
        return int(st[0]), st[1]


def wake_side(theirs, mine, stamps, rounds, timeout, answer,
              on_timeout=None):
    """One side of a ping-pong: the parent (answer=False) writes mine = r,
    then waits for theirs == r; the child (answer=True) waits, then writes.
    The version waited on is read before our own write, so the other
    side's answer lands between the version read and the sleep.

    stamps = (their stamp, my stamp): after each write a side records the
    round and the time its write call returned (the wake-up, if any, was
    sent by then).  A wait that times out tells a lost wake-up from a slow
    machine by that stamp: the library returns False only if the version
    had not moved at a re-check after the deadline, or the futex timed out
    before anyone woke it (src/wait.c, tag-timeout).  So if the other side
    had written round r and returned before our deadline (less
    MISSED_MARGIN_S, against rounding), and we still timed out, nobody
    woke us: "wake-up missed".  Otherwise the other side simply has not
    answered yet (preempted, nice 19 on a loaded machine): wait again, up
    to NO_ANSWER_S for the round, then fail with "no answer".  on_timeout,
    if given, is called then (the parent checks that its child lives)."""
    theirs_st, mine_st = stamps
    seen = theirs.version
    for r in range(1, rounds + 1):
        if not answer:
            seen = theirs.version
            _set(mine, r)
            _stamp(mine_st, r)
        round_start = time.monotonic()
        while _get(theirs) != r:
            before = seen
            started = time.monotonic()
            if not theirs.wait(timeout=timeout, version=seen):
                sr, st = _read_stamp(theirs_st)
                if sr == r and st < started + timeout - MISSED_MARGIN_S:
                    raise AssertionError(
                        'wake-up missed at round %d (version seen %d,'
                        ' current %d; value %r, waiting for %d): the other'
                        ' side wrote it %.3f s into our %.1f s wait and'
                        ' the wait still timed out'
                        % (r, before, theirs.version, _get(theirs), r,
                           st - started, timeout))
                if on_timeout is not None:
                    on_timeout()
                if time.monotonic() - round_start > NO_ANSWER_S:
                    raise AssertionError(
                        'no answer within %.0f s at round %d (version seen'
                        ' %d, current %d; value %r, waiting for %d; their'
                        ' last write: round %d)'
                        % (NO_ANSWER_S, r, before, theirs.version,
                           _get(theirs), r, sr))
                continue   # slow, not lost: wait again on the same version
            seen = theirs.version
        if answer:
            seen = theirs.version
            _set(mine, r)
            _stamp(mine_st, r)


def _get(v):
    return v[0] if hasattr(v, '__len__') else v.value


def _set(v, x):
    if hasattr(v, '__len__'):
        v[0] = x
    else:
        v.value = x


def hold_lock_stamped(lock, started, seconds, released, until=None):
    """hold_lock, and record in released.value the CLOCK_MONOTONIC time
    just before the release (comparable across processes).  until: an
    Event that ends the hold early (seconds is then the longest)."""
    with lock:
        started.set()
        if until is None:
            time.sleep(seconds)
        else:
            until.wait(seconds)
        released.value = time.monotonic()
