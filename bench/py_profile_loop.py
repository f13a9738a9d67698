# bench/py_profile_loop.py -- the loops profiled with callgrind in BENCHMARKS.md,
# "Python binding":  valgrind --tool=callgrind /usr/bin/python3 \
#     bench/py_profile_loop.py BUILD/python {empty|read|write|locked_inc|add|add_atomic|slice}
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
    elif what == 'empty':
        for i in range(N): pass

main()
