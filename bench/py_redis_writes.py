#!/usr/bin/python3
"""bench/py_redis_writes.py -- µs per element or field write of a locked
Redis value from Python (BENCHMARKS.md, "Element and field writes in one
round trip too"), for comparing two builds of the binding alternately:

    /usr/bin/python3 bench/py_redis_writes.py BUILD PORT {item|field}

BUILD: a build directory (its python/ holds the module); PORT: a
redis-server on 127.0.0.1 that the caller started (the segment made here
is removed at the end).  Prints the mean µs per write of N writes.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(sys.argv[1], 'python'))
import shval  # noqa: E402

port, what = int(sys.argv[2]), sys.argv[3]
name = 'redis://127.0.0.1:%d/pyrw%d' % (port, os.getpid())
seg = shval.Segment(name, create=True)
try:
    a = seg.array('a', 'q', 8)
    s = seg.value('s', 'x:q y:q')
    N = 3000
    if what == 'item':
        a[1] = 0                     # the first write fetches the bytes
        t0 = time.perf_counter_ns()
        for i in range(N):
            a[1] = i
    else:
        s.y = 0
        t0 = time.perf_counter_ns()
        for i in range(N):
            s.y = i
    t1 = time.perf_counter_ns()
    assert (a[1] if what == 'item' else s.y) == N - 1
    print('%s %.1f us/write' % (what, (t1 - t0) / N / 1000))
finally:
    seg.close()
    shval.unlink(name)
