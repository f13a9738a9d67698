"""shval: typed values shared between processes (CPython binding of libshval).

A drop-in for multiprocessing -- ``import shval as mp``: Value, Array,
RawValue, RawArray, Lock, RLock, Condition, Event, Semaphore,
BoundedSemaphore, Barrier, copy, synchronized and get_context are shval's;
every other public name of multiprocessing (Process, Pool, Queue, Pipe,
Manager, current_process, set_start_method, ...) is multiprocessing's own.
On top: atomic add/cas/exchange, version/wait (and wait_async), pickling by
reference (Pool, Queue, spawn, forkserver) and named segments for unrelated
processes.  See python/README.md in the source tree.
"""
import multiprocessing as _mp

from ._shval import (  # noqa: F401
    Value, Array, RawValue, RawArray, Lock, RLock, copy, synchronized,
    Segment, unlink, Error, OwnerDiedWarning,
    SharedValue, Synchronized, SharedArray, SynchronizedArray,
    SynchronizedString, library_version, HAVE_SHARED_LOCKS,
)
from . import _shval, _aio
from ._sync import (  # noqa: F401
    Condition, Event, Semaphore, BoundedSemaphore, Barrier, BrokenBarrierError,
)
from ._context import get_context  # noqa: F401

for _t in (SharedValue, SharedArray):
    _shval._add_method(_t, 'wait_async', _aio.wait_async)
for _t in (Lock, RLock, Synchronized, SynchronizedArray):
    _shval._add_method(_t, 'acquire_async', _aio.acquire_async)
    _shval._add_method(_t, 'release_async', _aio.release_async)
    _shval._add_method(_t, '__aenter__', _aio.__aenter__)
    _shval._add_method(_t, '__aexit__', _aio.__aexit__)
del _t

__all__ = [
    'Value', 'Array', 'RawValue', 'RawArray', 'Lock', 'RLock', 'copy',
    'synchronized', 'Segment', 'unlink', 'Error', 'OwnerDiedWarning',
    'SharedValue', 'Synchronized', 'SharedArray', 'SynchronizedArray',
    'SynchronizedString', 'Condition', 'Event', 'Semaphore',
    'BoundedSemaphore', 'Barrier', 'BrokenBarrierError', 'get_context',
]


def __getattr__(name):
    """The rest of multiprocessing (Process, Pool, Queue, ...)."""
    if name in _mp.__all__:
        return getattr(_mp, name)
    raise AttributeError("module 'shval' has no attribute %r" % name)


def __dir__():
    return sorted(set(globals()) | set(_mp.__all__))
