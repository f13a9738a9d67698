"""Redis segments (issue 14) from Python: what only they have.

Everything both kinds share runs on both through the `anysegname` and
`kind` fixtures of conftest.py (test_segment, test_value, test_array,
test_errors, test_hostile: test_x[local] and test_x[redis], on the
session's redis-server), including the documented differences (no buffer
protocol on a Redis value: test_array.test_buffer_protocol[redis]).  Here:
the redis+unix:// form of a segment name, through the same named-segment
tests (called, not copied)."""
import os

import pytest

import shval
import test_segment
from helpers import named_child  # noqa: F401  (the children of the tests)


@pytest.fixture
def usegname(request, redis_server):
    _, sock = redis_server
    prefix = 'pyu%d-%s' % (os.getpid(), ''.join(
        c if c.isalnum() else '-' for c in request.node.name[:60]))
    name = 'redis+unix://%s?prefix=%s' % (sock, prefix)
    yield name
    try:
        shval.unlink(name)
    except OSError:
        pass


def test_unix_socket_segment_basics(usegname):
    test_segment.test_segment_basics(usegname)


def test_unix_socket_across_processes(ctx, usegname):
    test_segment.test_named_across_processes(ctx, usegname)


def test_unix_socket_unrelated_process(usegname):
    test_segment.test_unrelated_process(usegname)


def test_locked_write_two_round_trips_and_its_version(kind, redis_server):
    """v.value = x on a locked Redis value: the lock and the commit, no
    fetch of the old bytes and no peek for the version; the version seen
    is the one the write committed (a wait that follows sees only later
    changes)."""
    if kind.local:
        pytest.skip('the round trips of a Redis value')
    import redis
    port, _ = redis_server
    v = kind.Value('q', 0)
    other = kind.seg.value('v1', 'q')   # v again (kind names them v1, ...)
    assert other.value == 0
    r = redis.Redis(port=port)
    before = r.info('commandstats')
    v.value = 5
    after = r.info('commandstats')

    def calls(stats, cmd):
        return stats.get('cmdstat_' + cmd, {}).get('calls', 0)
    assert calls(after, 'fcall') - calls(before, 'fcall') == 2
    # the lock's own HMGET inside its function, no fetch of the bytes
    assert calls(after, 'hmget') - calls(before, 'hmget') == 1
    ver = v.version
    assert v.wait(0.05) is False           # nothing after our write
    v.value = 6
    assert v.version == ver + 1
    other.value = 7                        # the same value, another handle
    assert v.wait(5) is True               # changed after our write
    assert v.value == 7
