import multiprocessing
import os
import sys

import pytest

# Every test that starts processes bounds its wait (join(timeout)/get(timeout));
# with python3-pytest-timeout installed, each test also gets a hard limit.
TIMEOUT = 60

START_METHODS = [m for m in ('fork', 'spawn', 'forkserver')
                 if m in multiprocessing.get_all_start_methods()]


# The segment kinds the kind-parametrised tests run on (below):
# SHVAL_TEST_KINDS=local, =redis or =local,redis (the default).  ctest runs
# python_tests with "local" and python_tests@redis with "redis", which then
# keeps only the tests that use a Redis server.
KINDS = [k for k in os.environ.get('SHVAL_TEST_KINDS', 'local,redis').split(',') if k]
assert KINDS and set(KINDS) <= {'local', 'redis'}, \
    'SHVAL_TEST_KINDS=%r: local, redis or local,redis' % os.environ['SHVAL_TEST_KINDS']


def pytest_collection_modifyitems(config, items):
    if config.pluginmanager.hasplugin('timeout'):
        for item in items:
            if item.get_closest_marker('timeout') is None:
                item.add_marker(pytest.mark.timeout(120))
    if 'local' not in KINDS:  # a Redis-only run
        keep = [i for i in items if {'seg_kind', 'redis_server'} & set(i.fixturenames)]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


def run(ctx, target, *args, timeout=TIMEOUT):
    """Run target(*args) in a process of context ctx; assert it succeeded."""
    p = ctx.Process(target=target, args=args)
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        pytest.fail('child process timed out')
    assert p.exitcode == 0, 'child exit code %r' % p.exitcode


@pytest.fixture(params=START_METHODS)
def ctx(request):
    return multiprocessing.get_context(request.param)


@pytest.fixture
def segname(request):
    """A local segment name of this test (local-only tests)."""
    import shval
    name = '/shval-pytest-%d-%s' % (os.getpid(), request.node.name[:60].replace('[', '_').replace(']', '_'))
    name = ''.join(c if c.isalnum() or c in '._-/' else '_' for c in name)
    yield name
    try:
        shval.unlink(name)
    except OSError:
        pass


# ---- segment kinds: the same test on a local and on a Redis segment ----
#
# A test that makes sense on both kinds asks for `anysegname` (a segment
# name) or `kind` (Value/Array factories) instead of `segname` /
# shval.Value: it runs twice, as test_x[local] and test_x[redis].  The
# Redis runs share one redis-server of the session (127.0.0.1, a free port,
# a directory of /tmp of its own, removed at the end), each test on a
# prefix of its own.  What stays local-only and why: tests/README.md.

@pytest.fixture(scope='session')
def redis_server():
    """(port, unix socket path) of the session's redis-server."""
    import shutil
    import socket
    import subprocess
    import tempfile
    import time
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
        else:
            pytest.fail('redis-server did not start; see %s/log' % d)
        yield port, sock
    finally:
        p.terminate()
        p.wait(10)
        shutil.rmtree(d, ignore_errors=True)


def _prefix(request):
    return 'py%d-%s' % (os.getpid(), ''.join(
        c if c.isalnum() else '-' for c in request.node.name[:80]))


@pytest.fixture(params=KINDS)
def seg_kind(request):
    return request.param


@pytest.fixture
def anysegname(request, seg_kind):
    """A segment name of this test: local, or redis://127.0.0.1:PORT/P."""
    import shval
    if seg_kind == 'local':
        name = '/shval-pytest-%d-%s' % (os.getpid(), request.node.name[:60])
        name = ''.join(c if c.isalnum() or c in '._-/' else '_' for c in name)
    else:
        port, _ = request.getfixturevalue('redis_server')
        name = 'redis://127.0.0.1:%d/%s' % (port, _prefix(request))
    yield name
    try:
        shval.unlink(name)
    except OSError:
        pass


class Kind:
    """Value/Array factories: shval.Value & co. (anonymous segments) for
    'local', values of a segment of the test's own for 'redis'."""

    def __init__(self, name, seg):
        self.name, self.seg, self._n = name, seg, 0

    @property
    def local(self):
        return self.seg is None

    def _name(self):
        self._n += 1
        return 'v%d' % self._n

    def Value(self, code, *init, lock=True):
        import shval
        if self.local:
            return shval.Value(code, *init, lock=lock)
        return self.seg.value(self._name(), code, *init, lock=lock)

    def RawValue(self, code, *init):
        return self.Value(code, *init, lock=False)

    def Array(self, code, size_or_init, lock=True):
        import shval
        if self.local:
            return shval.Array(code, size_or_init, lock=lock)
        return self.seg.array(self._name(), code, size_or_init, lock=lock)

    def RawArray(self, code, size_or_init):
        return self.Array(code, size_or_init, lock=False)


@pytest.fixture
def kind(request, seg_kind):
    import shval
    if seg_kind == 'local':
        yield Kind('local', None)
        return
    port, _ = request.getfixturevalue('redis_server')
    name = 'redis://127.0.0.1:%d/%s' % (port, _prefix(request))
    seg = shval.Segment(name, create=True)
    try:
        yield Kind('redis', seg)
    finally:
        seg.close()
        shval.unlink(name)


def pytest_configure(config):
    sys.path.insert(0, os.path.dirname(__file__))


def child_env():
    """Environment for a fresh interpreter that must import this shval."""
    import shval
    env = dict(os.environ)
    pkgdir = os.path.dirname(os.path.dirname(os.path.abspath(shval.__file__)))
    env['PYTHONPATH'] = os.pathsep.join([pkgdir] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    return env
