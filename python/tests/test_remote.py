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


def server_calls(port):
    """counted(fn): the calls of FCALL, HMGET and HGET the server (on port)
    ran while fn() ran (INFO commandstats before and after).  The commands
    a function runs inside count too: an FCALL is one round trip."""
    import redis
    r = redis.Redis(port=port)

    def calls(stats, cmd):
        return stats.get('cmdstat_' + cmd, {}).get('calls', 0)

    def counted(fn):
        before = r.info('commandstats')
        fn()
        after = r.info('commandstats')
        return tuple(calls(after, c) - calls(before, c)
                     for c in ('fcall', 'hmget', 'hget'))
    return counted


def test_locked_write_one_round_trip_and_its_version(kind, redis_server):
    """v.value = x on a locked Redis value nobody holds: one shval1_write
    (which checks the lease), no lock and commit, no fetch of the old bytes
    and no peek for the version; the version seen is the one the write
    committed (a wait that follows sees only later changes)."""
    if kind.local:
        pytest.skip('the round trips of a Redis value')
    v = kind.Value('q', 0)
    other = kind.seg.value('v1', 'q')   # v again (kind names them v1, ...)
    assert other.value == 0
    counted = server_calls(redis_server[0])
    # the fcall, the write's own HMGET inside its function; no fetch of the
    # bytes (HMGET of its own), no peek for the version
    assert counted(lambda: setattr(v, 'value', 5)) == (1, 1, 0)
    ver = v.version
    assert v.wait(0.05) is False           # nothing after our write
    v.value = 6
    assert v.version == ver + 1
    other.value = 7                        # the same value, another handle
    assert v.wait(5) is True               # changed after our write
    assert v.value == 7


def test_locked_add_one_round_trip_increment_two(kind, redis_server):
    """v.add(1) on a locked Redis value nobody holds: one shval1_write;
    `with v.get_lock(): v.value += 1`: the lease (which brings the value's
    bytes) and the commit, no fetch inside the section."""
    if kind.local:
        pytest.skip('the round trips of a Redis value')
    v = kind.Value('q', 10)
    counted = server_calls(redis_server[0])
    assert v.add(1) == 11
    # (the fcall; its own HMGET; no HGET)
    assert counted(lambda: v.add(1)) == (1, 1, 0)

    lk = v.get_lock()

    def inc():
        with lk:
            v.value += 1
    # (the fcalls; the lock's own HMGET; the commit's check of the serial):
    # the read and the write inside know the committed version from the
    # lease, no peek
    assert counted(inc) == (2, 1, 1)
    assert v.value == 13


def test_locked_element_and_field_write_one_round_trip(kind, redis_server):
    """a[i] = x and s.field = x on a locked Redis value nobody holds: one
    shval1_write (which checks the lease) from a fresh cache, no lock and
    commit, no peek for the version; from a stale cache one round trip more
    (the server's CHANGED brings the new bytes, the write is made on them:
    nothing another handle wrote is lost)."""
    if kind.local:
        pytest.skip('the round trips of a Redis value')
    counted = server_calls(redis_server[0])
    a = kind.Array('q', [0, 0, 0, 0])
    assert a[:] == [0, 0, 0, 0]            # the cache is fresh
    assert counted(lambda: a.__setitem__(1, 5)) == (1, 1, 0)
    assert counted(lambda: a.__setitem__(slice(2, 4), [6, 7])) == (1, 1, 0)
    ver = a.version
    assert a.wait(0.05) is False           # nothing after our writes
    other = kind.seg.array('v1', 'q', 4)  # a again (kind names them v1, ...)
    other[0] = 9                           # another handle: our cache is old
    # (two calls; the refused one's HGET of the new bytes, in the server)
    assert counted(lambda: a.__setitem__(3, 8)) == (2, 2, 1)
    assert a[:] == [9, 5, 6, 8]
    assert a.version == ver + 2

    seg = kind.seg
    st = seg.value('pt-%d' % os.getpid(), 'x:q y:q')
    st.x = 1                               # (the first write fetches)
    assert counted(lambda: setattr(st, 'y', 2)) == (1, 1, 0)
    assert (st.x, st.y) == (1, 2)
    lk = st.get_lock()
    with lk:                               # held here: staged, committed once
        st.x = 3
        st.y = 4
    assert (st.x, st.y) == (3, 4)


def test_lease_and_commit_release_the_gil(kind, redis_server):
    """Taking a Redis lock (the lease) and releasing it (the section's
    commit) are round trips made with the GIL released: another thread
    runs while the worker is inside them.  The switch interval is set far
    beyond the test, so the GIL changes hands only when a thread lets go of
    it (a wait, or a call that releases it); the server holds the call back
    (CLIENT PAUSE) so that the waiting thread surely wakes meanwhile."""
    if kind.local:
        pytest.skip('round trips of a Redis lock')
    import sys
    import threading
    import redis
    port, _ = redis_server
    v = kind.Value('q', 0)
    lk = v.get_lock()
    r = redis.Redis(port=port)
    where = []
    errors = []
    held, go, calling = (threading.Event() for _ in range(3))

    def worker(phase):
        try:
            if phase == 'release':
                lk.acquire()
                v.value += 1
                held.set()
                go.wait(30)
            where.append('in')
            calling.set()
            if phase == 'acquire':
                lk.acquire()
                where.append('out')
                lk.release()
            else:
                lk.release()
                where.append('out')
        except Exception as e:  # reported by the main thread
            errors.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(30)
    try:
        for phase in ('acquire', 'release'):
            del where[:]
            for e in (held, go, calling):
                e.clear()
            t = threading.Thread(target=worker, args=(phase,))
            if phase == 'acquire':
                r.client_pause(500)
                t.start()
            else:
                t.start()
                assert held.wait(30)
                r.client_pause(500)
                go.set()
            assert calling.wait(30)
            # this thread runs again only when the worker lets go of the GIL
            seen = list(where)
            t.join(30)
            assert not errors, errors
            assert seen == ['in'], (phase, seen)
    finally:
        sys.setswitchinterval(old)
    assert v.value == 1


@pytest.mark.parametrize('what', ['item', 'raw_item', 'field', 'slice'])
def test_element_and_field_writes_release_the_gil(what, kind, redis_server):
    """An element, slice or field write of a Redis value is a round trip
    made with the GIL released, as the lease and the commit above: another
    thread runs while the server holds the call back (CLIENT PAUSE; switch
    interval far beyond the test)."""
    if kind.local:
        pytest.skip('round trips of a Redis value')
    import sys
    import threading
    import redis
    port, _ = redis_server
    r = redis.Redis(port=port)
    if what == 'field':
        obj = kind.seg.value('s-%d' % os.getpid(), 'x:q y:q')
        op, check = (lambda: setattr(obj, 'y', 3)), (lambda: obj.y == 3)
    else:
        obj = kind.Array('q', [0, 0], lock=what != 'raw_item')
        if what == 'slice':
            op, check = (lambda: obj.__setitem__(slice(0, 2), [3, 3])), \
                (lambda: obj[:] == [3, 3])
        else:
            op, check = (lambda: obj.__setitem__(1, 3)), (lambda: obj[1] == 3)
    done, errors = [], []
    calling = threading.Event()

    def worker():
        try:
            calling.set()
            op()
            done.append(1)
        except Exception as e:  # reported by the main thread
            errors.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(30)
    try:
        r.client_pause(500)
        t = threading.Thread(target=worker)
        t.start()
        assert calling.wait(30)
        # this thread runs again only when the worker lets go of the GIL
        seen = list(done)
        t.join(30)
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors
    assert seen == [], seen
    assert check()


@pytest.mark.parametrize('op', ['set', 'add', 'item', 'field', 'get_lock'])
def test_dead_owner_reported_on_the_one_round_trip_paths(op, redis_server):
    """A Redis lock whose owner died inside a section (its lease expired,
    its staged writes never committed): the next v.value = x, v.add(d),
    a[i] = x or s.field = x -- one round trip when nobody holds the lock --
    does not recover it silently but takes the lock, which reports the
    death as locally (OwnerDiedWarning, the last committed state), once."""
    import multiprocessing
    import time
    import warnings
    from helpers import die_in_section
    port, _ = redis_server
    name = 'redis://127.0.0.1:%d/pydead-%d-%s?lease_ms=300' % (
        port, os.getpid(), op)
    try:
        shval.unlink(name)
    except OSError:
        pass
    seg = shval.Segment(name, create=True)
    try:
        if op == 'item':
            v = seg.array('a', 'q', [0, 1])
            key, get = 1, (lambda: v[1])
        elif op == 'field':
            v = seg.value('s', 'x:q y:q')
            v.y = 1
            key, get = 'y', (lambda: v.y)
        else:
            v = seg.value('v', 'q', 1)
            key, get = None, (lambda: v.value)
        fork = multiprocessing.get_context('fork')
        p = fork.Process(target=die_in_section,
                         args=(v.get_lock(), [(v, key, 99)], 'kill'))
        p.start()
        p.join(60)
        assert p.exitcode == -9
        time.sleep(0.6)                     # the lease (300 ms) is over
        assert get() == 1                   # the last committed state
        with pytest.warns(shval.OwnerDiedWarning):
            if op == 'set':
                v.value = 5
            elif op == 'add':
                assert v.add(4) == 5
            elif op == 'item':
                v[1] = 5
            elif op == 'field':
                v.y = 5
            else:
                with v.get_lock():
                    v.value += 4
        assert get() == 5
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            if key is None:
                v.value = 6                 # recovered once: no warning
                assert v.add(1) == 7
            elif key == 1:
                v[1] = 7
                assert v[:] == [0, 7]
            else:
                v.y = 7
                assert (v.x, v.y) == (0, 7)
    finally:
        seg.close()
        shval.unlink(name)
