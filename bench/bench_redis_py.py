#!/usr/bin/python3
"""bench/bench_redis_py.py -- the Python row of Redis segments (issue 14):

  py_redis_read   x = v.value of a shval Value('q') on a redis:// segment
                  vs  redis-py (Debian's python3-redis) GET of the same
                  number's 8 bytes plus struct.unpack
Both over TCP to the redis-server bench/run.sh started (its port in
SHVAL_BENCH_REDIS_PORT); one request at a time; ABBA repetitions, ratio =
shval / redis-py per repetition, median (as bench/harness.h).  Target: shval
at least 2x faster (ratio <= 0.5).

    /usr/bin/python3 bench/bench_redis_py.py --build DIR [--quick] [--reps N]
                                             [--min-sec S] [--json F]
"""
import argparse
import json
import os
import struct
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument('--build', required=True)
ap.add_argument('--quick', action='store_true')
ap.add_argument('--reps', type=int, default=7)
ap.add_argument('--min-sec', type=float, default=0.3)
ap.add_argument('--only')
ap.add_argument('--json')
A = ap.parse_args()
NAME = 'py_redis_read'
if A.only and A.only not in NAME:
    sys.exit(0)


def emit(row):
    print('%-18s %s' % (NAME, row.get('skipped') or
                        'shval %.1f ns/op  redis-py %.1f ns/op  ratio %.3f '
                        '= %.1fx faster  target <= 0.5  %s'
                        % (row['shval_ns'], row['baseline_ns'], row['ratio'],
                           1 / row['ratio'], 'met' if row['met'] else 'MISSED')),
          flush=True)
    if A.json:
        with open(A.json, 'a') as f:
            f.write(json.dumps(row) + '\n')


base = {'case': NAME, 'what': 'read a Redis number from Python: shval '
        'Value.value vs redis-py GET + struct.unpack', 'target': 'ratio <= 0.5',
        'target_max': 0.5, 'quick': A.quick}
sys.path.insert(0, os.path.join(A.build, 'python'))
try:
    import shval
    import redis
except ImportError as e:
    base.update(skipped='skipped: %s' % e, met=None)
    emit(base)
    sys.exit(0)
port = int(os.environ['SHVAL_BENCH_REDIS_PORT'])
seg = shval.Segment('redis://127.0.0.1:%d/shvalbenchpy' % port, create=True)
v = seg.value('n', 'q', 12345)
r = redis.Redis(host='127.0.0.1', port=port)
r.set('benchpy.raw', struct.pack('<q', 12345))


def side_shval(n):
    t0 = time.perf_counter_ns()
    for _ in range(n):
        x = v.value
    assert x == 12345
    return time.perf_counter_ns() - t0


def side_redispy(n):
    t0 = time.perf_counter_ns()
    for _ in range(n):
        x = struct.unpack('<q', r.get('benchpy.raw'))[0]
    assert x == 12345
    return time.perf_counter_ns() - t0


def rep(fn):
    n, total = 64, 0
    ops = 0
    while True:
        total += fn(n)
        ops += n
        if A.quick or total >= A.min_sec * 1e9:
            return total / ops


if not A.quick:
    rep(side_shval), rep(side_redispy)
reps = 1 if A.quick else A.reps
a, b, ratios = [], [], []
for i in range(reps):
    if i % 2 == 0:
        a.append(rep(side_shval)), b.append(rep(side_redispy))
    else:
        b.append(rep(side_redispy)), a.append(rep(side_shval))
    ratios.append(a[-1] / b[-1])


def median(xs):
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


rp = median(ratios)
base.update(shval_ns=median(a), baseline_ns=median(b), ratio=rp,
            ratio_of_medians=median(a) / median(b), ratio_min=min(ratios),
            ratio_max=max(ratios), met=rp <= 0.5, repetitions=reps,
            note='redis-py %s' % redis.__version__)
emit(base)
seg.close()
shval.unlink('redis://127.0.0.1:%d/shvalbenchpy' % port)
