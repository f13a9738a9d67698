"""Redis segments (issue 14) from Python: the named-segment tests of
test_segment.py run again on redis:// and redis+unix:// segments of a
redis-server this module starts (in a /tmp directory of its own, removed
at the end) and stops.  redis-server missing is a failure: make test
installs it."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

import shval
import test_segment
from conftest import run
from helpers import named_child  # noqa: F401  (the children of the tests)


@pytest.fixture(scope='module')
def redis_server():
    exe = shutil.which('redis-server')
    assert exe, 'redis-server is not installed (make deps installs it)'
    d = tempfile.mkdtemp(prefix='shval-pytest-redis-')
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    sock = os.path.join(d, 'sock')
    p = subprocess.Popen([exe, '--port', str(port), '--bind', '127.0.0.1',
                          '--unixsocket', sock, '--unixsocketperm', '700',
                          '--dir', d, '--logfile', os.path.join(d, 'log'),
                          '--save', '', '--appendonly', 'no'],
                         stdin=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                c = socket.socket(socket.AF_UNIX)
                c.connect(sock)
                c.close()
                break
            except OSError:
                time.sleep(0.05)
        yield port, sock
    finally:
        p.terminate()
        p.wait(10)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=['tcp', 'unix'])
def rsegname(request, redis_server):
    port, sock = redis_server
    prefix = 'py%d-%s' % (os.getpid(), ''.join(
        c if c.isalnum() else '-' for c in request.node.name[:60]))
    if request.param == 'tcp':
        name = 'redis://127.0.0.1:%d/%s' % (port, prefix)
    else:
        name = 'redis+unix://%s?prefix=%s' % (sock, prefix)
    yield name
    try:
        shval.unlink(name)
    except OSError:
        pass


def test_segment_basics(rsegname):
    test_segment.test_segment_basics(rsegname)


def test_named_across_processes(ctx, rsegname):
    test_segment.test_named_across_processes(ctx, rsegname)


def test_named_pickles_by_name(rsegname):
    test_segment.test_named_pickles_by_name(rsegname)


def test_unrelated_process(rsegname):
    test_segment.test_unrelated_process(rsegname)


def test_remote_specifics(rsegname):
    with pytest.raises(FileNotFoundError):
        shval.Segment(rsegname)
    with shval.Segment(rsegname, create=True) as seg:
        v = seg.value('x', 'q', 1)
        # no shared memory to expose: the buffer protocol is refused
        with pytest.raises(Exception) as e:
            memoryview(v.get_obj() if hasattr(v, 'get_obj') else v)
        assert 'shared memory' in str(e.value) or 'EMODE' in repr(e.value) \
            or 'not supported' in str(e.value)
        with v.get_lock():
            v.value = 5
        assert v.value == 5
