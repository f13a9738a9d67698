import multiprocessing
import os
import sys

import pytest

# Every test that starts processes bounds its wait (join(timeout)/get(timeout));
# with python3-pytest-timeout installed, each test also gets a hard limit.
TIMEOUT = 60

START_METHODS = [m for m in ('fork', 'spawn', 'forkserver')
                 if m in multiprocessing.get_all_start_methods()]


def pytest_collection_modifyitems(config, items):
    if config.pluginmanager.hasplugin('timeout'):
        for item in items:
            if item.get_closest_marker('timeout') is None:
                item.add_marker(pytest.mark.timeout(120))


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
    import shval
    name = '/shval-pytest-%d-%s' % (os.getpid(), request.node.name[:60].replace('[', '_').replace(']', '_'))
    name = ''.join(c if c.isalnum() or c in '._-/' else '_' for c in name)
    yield name
    try:
        shval.unlink(name)
    except OSError:
        pass


def pytest_configure(config):
    sys.path.insert(0, os.path.dirname(__file__))


def child_env():
    """Environment for a fresh interpreter that must import this shval."""
    import shval
    env = dict(os.environ)
    pkgdir = os.path.dirname(os.path.dirname(os.path.abspath(shval.__file__)))
    env['PYTHONPATH'] = os.pathsep.join([pkgdir] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    return env
