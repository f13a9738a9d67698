"""Lost wake-ups fail fast: processes ping-pong through v.wait().

Each side writes its value with the round number and waits (timeout 2 s,
far above a normal hand-off) for the other side's value to show the same
round.  The version waited on is read before the side's own write, so the
answer lands between the version read and the sleep.  A missed wake-up
fails at once with "wake-up missed at round N (version seen X, current Y)".
"""
import multiprocessing

import pytest

import shval
from helpers import wake_child, wake_side

ROUNDS = 1000
WAIT_S = 2.0

KINDS = {
    'locked': lambda: shval.Value('q', 0),
    'atomic': lambda: shval.RawValue('q', 0),
    'raw_array': lambda: shval.RawArray('q', 1),
    'locked_array': lambda: shval.Array('q', 1),
    'shared_lock': lambda: shval.Value('q', 0, lock=_shared_lock()),
}

_lock = []


def _shared_lock():
    if not _lock:
        _lock.append(shval.RLock())
    return _lock[0]


@pytest.mark.parametrize('kind', sorted(KINDS))
@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_wake_pingpong(kind, method):
    ctx = multiprocessing.get_context(method)
    ping, pong = KINDS[kind](), KINDS[kind]()
    out = ctx.Queue()
    p = ctx.Process(target=wake_child, args=(ping, pong, ROUNDS, WAIT_S, out))
    p.start()
    try:
        assert out.get(timeout=60) == 'ready'   # not timed: the child's start
        try:
            wake_side(pong, ping, ROUNDS, WAIT_S, answer=False)
        except AssertionError:
            if not p.is_alive():
                pytest.fail('child died: exit code %r' % p.exitcode)
            raise
        err = out.get(timeout=60)
        assert err is None, 'child: ' + err
    finally:
        p.join(60)
        if p.is_alive():
            p.kill()
            p.join()
    assert p.exitcode == 0
