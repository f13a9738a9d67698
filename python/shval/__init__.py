"""shval: typed values shared between processes (CPython binding of libshval).

A drop-in for multiprocessing.sharedctypes -- ``import shval as mp`` style:
Value, Array, RawValue, RawArray, Lock, RLock, copy, synchronized -- plus
atomic add/cas/exchange, version/wait, pickling by reference (Pool, Queue,
spawn, forkserver) and named segments for unrelated processes.
All of the work is done in the C extension ``shval._shval``.
See python/README.md in the source tree.
"""
from ._shval import (  # noqa: F401
    Value, Array, RawValue, RawArray, Lock, RLock, copy, synchronized,
    Segment, unlink, Error, OwnerDiedWarning,
    SharedValue, Synchronized, SharedArray, SynchronizedArray,
    SynchronizedString, library_version, HAVE_SHARED_LOCKS,
)

__all__ = [
    'Value', 'Array', 'RawValue', 'RawArray', 'Lock', 'RLock', 'copy',
    'synchronized', 'Segment', 'unlink', 'Error', 'OwnerDiedWarning',
    'SharedValue', 'Synchronized', 'SharedArray', 'SynchronizedArray',
    'SynchronizedString',
]
