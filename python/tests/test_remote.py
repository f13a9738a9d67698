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
