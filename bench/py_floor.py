#!/usr/bin/python3
"""bench/py_floor.py -- the interpreter's own floor under bench_py.py's rows
(BENCHMARKS.md, "Python binding"): the same loop (op(i) called from
loop(), checked every 256) around operations that do no work in C, next to
the shval and multiprocessing operations of the rows, all in one sitting,
alternating the order of the cases on every repetition.

    nice -n -5 /usr/bin/python3 bench/py_floor.py [BUILD] [--reps N] [--sec S]

A C getter or setter cannot cost less than the generic attribute
machinery it runs under, so `__slots__ read/store` (a member descriptor:
C code that copies one pointer) bounds what any `.value` can reach; the
ratio of that floor to multiprocessing's time is the best ratio a C
extension can show in that row.
"""
import multiprocessing
import os
import sys
import time

args = [a for a in sys.argv[1:] if not a.startswith('--')]
build = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'build-bench')
sys.path.insert(0, os.path.join(os.path.abspath(build), 'python'))
import shval  # noqa: E402

REPS = 7
SEC = 0.2
for a in sys.argv[1:]:
    if a.startswith('--reps='):
        REPS = int(a.split('=')[1])
    if a.startswith('--sec='):
        SEC = float(a.split('=')[1])
now = time.perf_counter_ns
STOP = [0]


def loop(n, op):  # bench_py.py's loop, verbatim
    i = 0
    stop = STOP[0]
    while i < n:
        for j in range(i, i + 256):
            op(j)
        i += 256
        if now() >= stop:
            break
    return i


class S:
    __slots__ = ('x',)


s = S()
s.x = 0
f = 1.5
v = shval.Value('i')
r = shval.RawValue('i')
a = shval.Array('i', 1000)
mv = multiprocessing.Value('i')
ma = multiprocessing.Array('i', 1000)
discard = set().discard
vadd, radd = v.add, r.add
mlock = mv.get_lock()


def mp_inc(_i):
    with mlock:
        mv.value += 1


CASES = {
    'empty op(i)': lambda i: None,
    'slots read  s.x': lambda i: s.x,
    'slots store s.x = i & 0xffff': lambda i: setattr(s, 'x', i & 0xffff),
    'C getset read  f.real': lambda i: f.real,
    'C METH_O call  set().discard(1)': lambda i: discard(1),
    'shval read  v.value': lambda i: v.value,
    'shval write v.value = i & 0xffff': None,
    'shval v.add(1) (locked)': lambda i: vadd(1),
    'shval r.add(1) (atomic)': lambda i: radd(1),
    'shval a[:] (1000 i)': lambda i: a[:],
    'mp read  v.value': lambda i: mv.value,
    'mp write v.value = i & 0xffff': None,
    'mp with lock: v.value += 1': mp_inc,
    'mp a[:] (1000 i)': lambda i: ma[:],
}


# the stores as bench_py.py writes them (a statement, not setattr())
def _slots_store(i):
    s.x = i & 0xffff


def _shval_write(i):
    v.value = i & 0xffff


def _mp_write(i):
    mv.value = i & 0xffff


CASES['slots store s.x = i & 0xffff'] = _slots_store
CASES['shval write v.value = i & 0xffff'] = _shval_write
CASES['mp write v.value = i & 0xffff'] = _mp_write

res = {k: [] for k in CASES}
names = list(CASES)
for rep in range(REPS):
    order = names if rep % 2 == 0 else names[::-1]
    for k in order:
        STOP[0] = now() + int(SEC * 1e9)
        t0 = now()
        n = loop(1 << 62, CASES[k])
        res[k].append((now() - t0) / n)
print('loadavg %.2f %.2f %.2f; %d reps of %.2f s; median ns/op' % (os.getloadavg() + (REPS, SEC)))
for k in names:
    xs = sorted(res[k])
    print('%-36s %8.1f  (%.1f..%.1f)' % (k, xs[len(xs) // 2], xs[0], xs[-1]))
