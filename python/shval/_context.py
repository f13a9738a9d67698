"""shval.get_context(method): a real multiprocessing context whose shared
objects and synchronization primitives are shval's (issue 12, item 9).

The context is a subclass of multiprocessing's own ForkContext /
SpawnContext / ForkServerContext: Process, Pool, Queue, Pipe, Manager, ...
are multiprocessing's, started with that method; Value, Array, RawValue,
RawArray, Lock, RLock, Condition, Event, Semaphore, BoundedSemaphore and
Barrier are shval's.  ctx.get_context(m) stays in shval.
"""
import multiprocessing
import multiprocessing.context as _mpctx

from . import _shval, _sync

SHVAL_NAMES = ('Value', 'Array', 'RawValue', 'RawArray', 'Lock', 'RLock',
               'Condition', 'Event', 'Semaphore', 'BoundedSemaphore', 'Barrier')


class _ShvalContextMixin:
    def Value(self, typecode_or_type, *args, lock=True):
        return _shval.Value(typecode_or_type, *args, lock=lock)

    def Array(self, typecode_or_type, size_or_initializer, *, lock=True):
        return _shval.Array(typecode_or_type, size_or_initializer, lock=lock)

    def RawValue(self, typecode_or_type, *args):
        return _shval.RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type, size_or_initializer):
        return _shval.RawArray(typecode_or_type, size_or_initializer)

    def Lock(self):
        return _shval.Lock()

    def RLock(self):
        return _shval.RLock()

    def Condition(self, lock=None):
        return _sync.Condition(lock)

    def Event(self):
        return _sync.Event()

    def Semaphore(self, value=1):
        return _sync.Semaphore(value)

    def BoundedSemaphore(self, value=1):
        return _sync.BoundedSemaphore(value)

    def Barrier(self, parties, action=None, timeout=None):
        return _sync.Barrier(parties, action, timeout)

    def get_context(self, method=None):
        if method is None:
            return self
        return get_context(method)

    def __repr__(self):
        return '<shval context %r>' % self._name


_classes = {}
_instances = {}


def get_context(method=None):
    """A multiprocessing context for method ('fork', 'spawn', 'forkserver'
    or None: the current default start method) with shval's objects."""
    if method is None:
        method = multiprocessing.get_start_method()
    if method in _instances:
        return _instances[method]
    base = multiprocessing.get_context(method)      # ValueError if unknown
    cls = type(base)
    if cls not in _classes:
        _classes[cls] = type('Shval' + cls.__name__, (_ShvalContextMixin, cls), {})
    ctx = _classes[cls]()
    _instances[method] = ctx
    return ctx


assert all(hasattr(_mpctx.BaseContext, n) for n in SHVAL_NAMES)
