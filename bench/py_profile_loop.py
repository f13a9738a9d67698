# bench/py_profile_loop.py -- the loops profiled with callgrind in BENCHMARKS.md,
# "Python binding":  valgrind --tool=callgrind /usr/bin/python3 \
#     bench/py_profile_loop.py BUILD/python {empty|read|write|locked_inc|add|add_atomic|slice}
# and the same loops on multiprocessing's objects (mp_read, mp_write,
# mp_locked_inc, mp_slice) and on a __slots__ attribute (slots_read,
# slots_store: the interpreter's floor under any C getter/setter), a C
# getset read and a C METH_NOARGS call (getset_read, meth_noargs), and the
# bench's op(i) call (call).
# Instructions per operation = (total of the loop - total of "empty") / N.
import sys
sys.path.insert(0, sys.argv[1])
import shval
what = sys.argv[2]
v = shval.Value('i')
r = shval.RawValue('i')
a = shval.Array('i', 1000)
lk = v.get_lock()
N = 200000
import multiprocessing  # every case: the same setup, subtracted by "empty"
mv = multiprocessing.Value('i')
ma = multiprocessing.Array('i', 1000)
mlk = mv.get_lock()
class S:
    __slots__ = ('x',)
o = S()
o.x = 0
f = 1.5
def nop(_i):
    pass
def main():
    if what == 'read':
        for i in range(N): v.value
    elif what == 'write':
        for i in range(N): v.value = i & 0xffff
    elif what == 'locked_inc':
        for i in range(N):
            with lk: v.value += 1
    elif what == 'add':
        add = v.add
        for i in range(N): add(1)
    elif what == 'add_atomic':
        add = r.add
        for i in range(N): add(1)
    elif what == 'slice':
        for i in range(N // 100): a[:]
    elif what == 'mp_read':
        for i in range(N): mv.value
    elif what == 'mp_write':
        for i in range(N): mv.value = i & 0xffff
    elif what == 'mp_locked_inc':
        for i in range(N):
            with mlk: mv.value += 1
    elif what == 'mp_slice':
        for i in range(N // 100): ma[:]
    elif what == 'slots_read':
        for i in range(N): o.x
    elif what == 'slots_store':
        for i in range(N): o.x = i & 0xffff
    elif what == 'getset_read':  # a C getset descriptor (float.real)
        for i in range(N): f.real
    elif what == 'meth_noargs':  # a C METH_NOARGS method (float.conjugate)
        for i in range(N): f.conjugate()
    elif what == 'call':  # bench_py.py's op(i): a Python call per op
        for i in range(N): nop(i)
    elif what == 'empty':
        for i in range(N): pass

main()
