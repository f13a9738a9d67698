"""Lost wake-ups fail fast: processes ping-pong through v.wait().

Each side writes its value with the round number and waits (timeout 2 s,
far above a normal hand-off) for the other side's value to show the same
round.  The version waited on is read before the side's own write, so the
answer lands between the version read and the sleep.  A missed wake-up
fails within one timeout with "wake-up missed at round N (version seen X,
current Y ...)".  A timeout alone is not taken for a missed wake-up: on a
loaded machine a nice-19 process may not run for seconds.  Each side
stamps the time its write returned, and a timeout counts as a missed
wake-up only if the other side had written before our deadline; otherwise
the side waits again, up to 60 s a round ("no answer within 60 s";
helpers.wake_side).
"""
import multiprocessing
import queue

import pytest

import shval
from helpers import NO_ANSWER_S, new_stamp, wake_child, wake_side

ROUNDS = 1000
WAIT_S = 2.0

KINDS = {
    'locked': lambda: shval.Value('q', 0),
    'atomic': lambda: shval.RawValue('q', 0),
    'raw_array': lambda: shval.RawArray('q', 1),
    'locked_array': lambda: shval.Array('q', 1),
    'shared_lock': lambda: shval.Value('q', 0, lock=_shared_lock()),
}

_lock = []   # the case's shared lock (ping and pong share it)


def _shared_lock():
    if not _lock:
        _lock.append(shval.RLock())
    return _lock[0]


@pytest.fixture(autouse=True)
def _forget_shared_lock():
    # one lock per case: kept for the module's life, it kept its pool
    # segment mapped in the pytest process for every later test file (and
    # test_lifetime counts the segments this process maps)
    yield
    _lock.clear()


@pytest.mark.parametrize('kind', sorted(KINDS))
@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_wake_pingpong(kind, method):
    ctx = multiprocessing.get_context(method)
    ping, pong = KINDS[kind](), KINDS[kind]()
    ping_st, pong_st = new_stamp(), new_stamp()
    out = ctx.Queue()
    p = ctx.Process(target=wake_child,
                    args=(ping, pong, (ping_st, pong_st), ROUNDS, WAIT_S, out))
    p.start()

    def child_gone():
        """A child that failed ("wake-up missed") or died ends the case at
        once, with its message, instead of after our 60 s of no answer."""
        if p.is_alive():
            return
        try:
            err = out.get(timeout=10)
        except queue.Empty:
            err = None
        pytest.fail('child: ' + err if err else
                    'child died: exit code %r' % p.exitcode)

    done = False
    try:
        assert out.get(timeout=60) == 'ready'   # not timed: the child's start
        try:
            wake_side(pong, ping, (pong_st, ping_st), ROUNDS, WAIT_S,
                      answer=False, on_timeout=child_gone)
        except AssertionError:
            child_gone()
            raise
        err = out.get(timeout=NO_ANSWER_S)
        assert err is None, 'child: ' + err
        done = True
    finally:
        # After a failure the child may be waiting for a round that will
        # not come: end it now rather than after its 60 s.
        p.join(NO_ANSWER_S if done else 0)
        if p.is_alive():
            p.kill()
            p.join()
    assert p.exitcode == 0
