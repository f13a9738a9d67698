#!/usr/bin/python3
"""bench/bench_py.py -- the Python rows: the shval binding against
multiprocessing, the same interpreter and the same code on both sides, in one
program with alternating repetitions (ABBA order; see bench/harness.h).

    /usr/bin/python3 bench/bench_py.py [--build DIR] [--quick] [--reps N]
                                       [--min-sec S] [--only CASE] [--json F]

The shval module is imported from DIR/python (default: build-bench).  If it
cannot be imported every row is reported as "skipped: binding not built".

Rows (ratio = shval s/op / multiprocessing s/op; "N x faster" = 1/ratio):
  py_read           x = v.value            Value('i') both sides
  py_write          v.value = i            Value('i') both sides
  py_locked_inc_2p  with v.get_lock(): v.value += 1, 2 processes, exact total
  py_add_2p         shval: v.add(1) on Value('i'), 2 processes, exact total,
                    vs multiprocessing's locked increment (as above)
  py_add_2p_atomic  the same with shval.RawValue('i') (an atomic value)
  py_slice_1000     a[:] on Array('i', 1000) both sides (the list of 1000 ints)
  py_wake_pingpong  2 processes alternately set v.value and v.wait() for the
                    other's number  vs  two multiprocessing.Event ping-pong
  *_inline          the same rows (read, write, slice, locked_inc_2p, add_2p,
                    add_2p_atomic) with the statement in the loop's body, as
                    timeit runs a statement, instead of a call of op(i) per
                    operation: that call (about 381 instructions, BENCHMARKS.md)
                    is added to both sides and pulls every ratio towards 1
Two-process rows fork with os.fork() on both sides; ns/op counts the
operations of both processes; fork/exit are outside the timed span.
"""
import argparse
import json
import multiprocessing
import os
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument('--build', default=os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', 'build-bench'))
ap.add_argument('--quick', action='store_true')
ap.add_argument('--reps', type=int, default=7)
ap.add_argument('--min-sec', type=float, default=0.3)
ap.add_argument('--only')
ap.add_argument('--json')
A = ap.parse_args()

sys.path.insert(0, os.path.join(os.path.abspath(A.build), 'python'))
try:
    import shval
    SKIP = None
except Exception as e:  # noqa: BLE001 -- any import failure means "not built"
    shval = None
    SKIP = 'skipped: binding not built (%s: %s)' % (type(e).__name__, e)

mpctx = multiprocessing.get_context('fork')
now = time.perf_counter_ns


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def emit(row):
    if A.json:
        with open(A.json, 'a') as f:
            f.write(json.dumps(row) + '\n')


def selected(name):
    return not A.only or A.only in name


STOP_AT = [0]   # perf_counter_ns deadline of the current run
BIG = 1 << 62


def once(fn, maxops, sec):
    STOP_AT[0] = now() + int((10 if A.quick else sec) * 1e9)
    return fn(maxops)


def loop(n, op):
    """Call op(i) until n calls or STOP_AT (checked every 256); -> count."""
    i = 0
    stop = STOP_AT[0]
    while i < n:
        for j in range(i, i + 256):
            op(j)
        i += 256
        if now() >= stop:
            break
    return i


LOOP_SRC = '''
def run_loop(n):
    i = 0
    stop = STOP_AT[0]
    while i < n:
        for j in range(i, i + 256):
%s
        i += 256
        if now() >= stop:
            break
    return i
'''


def inline(stmt, **env):
    """As loop(n, op), with stmt (j = the operation's number) compiled into
    the loop's body: the *_inline rows time the operation, not a Python
    call around it.  env: the names stmt uses."""
    body = '\n'.join(' ' * 12 + line for line in stmt.split('\n'))
    ns = dict(env, STOP_AT=STOP_AT, now=now)
    exec(LOOP_SRC % body, ns)  # noqa: S102 -- our own fixed statements
    return ns['run_loop']


def compare(name, what, a_label, a_fn, b_label, b_fn, target_max, note='',
            start=256):
    """target_max: ratio shval/baseline must be <= this."""
    if not selected(name):
        return
    if SKIP:
        print('%-18s %s' % (name, SKIP))
        emit({'case': name, 'what': what, 'skipped': SKIP, 'quick': A.quick,
              'target': 'ratio <= %.4g' % target_max, 'target_max': target_max,
              'met': None, 'note': note})
        return
    l0 = loadavg()
    maxops = start if A.quick else BIG
    sides = [[a_label, a_fn, maxops, [], []], [b_label, b_fn, maxops, [], []]]
    if not A.quick:  # warm-up, not recorded
        for s in sides:
            if not once(s[1], s[2], A.min_sec / 3)[2]:
                raise SystemExit('%s (%s): check failed' % (name, s[0]))
    n = 1 if A.quick else A.reps
    ratios = []
    for i in range(n):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for k in order:
            s = sides[k]
            ns, ops, ok = once(s[1], s[2], A.min_sec)
            if not ok:
                raise SystemExit('%s (%s): check failed' % (name, s[0]))
            s[3].append(ns / ops)
            s[4].append(ns / 1e9)
        ratios.append(sides[0][3][-1] / sides[1][3][-1])
    ma, mb, rp = median(sides[0][3]), median(sides[1][3]), median(ratios)
    met = rp <= target_max
    print('%-18s shval %10.1f ns/op  multiprocessing %10.1f ns/op  ratio %6.3f '
          '(%.3f..%.3f) = %.1fx faster  target <= %.3g  %s'
          % (name, ma, mb, rp, min(ratios), max(ratios), 1 / rp, target_max,
             '(quick)' if A.quick else ('met' if met else 'MISSED')), flush=True)

    def stats(s):
        return {'label': s[0], 'median': median(s[3]), 'min': min(s[3]),
                'max': max(s[3]),
                'rep_sec_min': min(s[4]), 'ns_per_op': s[3]}
    emit({'case': name, 'what': what, 'shval_ns': ma, 'baseline_ns': mb,
          'ratio': rp, 'ratio_of_medians': ma / mb, 'ratio_min': min(ratios),
          'ratio_max': max(ratios), 'target': 'ratio <= %.4g' % target_max,
          'target_max': target_max, 'met': met, 'repetitions': n,
          'quick': A.quick, 'loadavg_before': l0, 'loadavg_after': loadavg(),
          'shval': stats(sides[0]), 'baseline': stats(sides[1]),
          'note': note, 'python': sys.version.split()[0]})


# ---- one process ----

def make_read(v):
    def op(_i):
        v.value

    def run(n):
        t0 = now()
        k = loop(n, op)
        return now() - t0, k, True
    return run


def make_write(v):
    def op(i):
        v.value = i & 0xffff

    def run(n):
        t0 = now()
        k = loop(n, op)
        t1 = now()
        return t1 - t0, k, v.value == (k - 1) & 0xffff
    return run


def make_slice(a):
    def op(_i):
        a[:]

    def run(n):
        t0 = now()
        k = loop(n, op)
        return now() - t0, k, len(a[:]) == 1000
    return run


def make_inline1(stmt, check, **env):
    """A one-process row of the inline kind: check(k) after k operations."""
    run_loop = inline(stmt, **env)

    def run(n):
        t0 = now()
        k = run_loop(n)
        t1 = now()
        return t1 - t0, k, check(k)
    return run


# ---- two processes (fork) ----

def two_procs(work, n):
    """Run work(who, n) -> ops in this process (who=0) and a forked child
    (who=1), started together; returns (elapsed ns to the later end,
    (ops0, ops1), ok)."""
    rd, wr = os.pipe()
    gord, gowr = os.pipe()
    endrd, endwr = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(rd)
            os.close(gowr)
            os.close(endrd)
            os.write(wr, b'r')
            os.read(gord, 1)
            k = work(1, n)
            os.write(endwr, ('%d %d' % (now(), k)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(wr)
    os.close(gord)
    os.close(endwr)
    os.read(rd, 1)
    t0 = now()
    os.write(gowr, b'g')
    k0 = work(0, n)
    t1 = now()
    data = os.read(endrd, 64).split()
    _, st = os.waitpid(pid, 0)
    for fd in (rd, gowr, endrd):
        os.close(fd)
    ok = os.waitstatus_to_exitcode(st) == 0 and len(data) == 2
    end = max(t1, int(data[0]) if ok else t1)
    return end - t0, (k0, int(data[1]) if ok else 0), ok


def check_total(v, ops):
    if v.value != ops[0] + ops[1]:
        print('  total %d, expected %d + %d' % (v.value, ops[0], ops[1]),
              file=sys.stderr)
        return False
    return True


def make_locked_inc2(v):
    lock = v.get_lock()

    def op(_i):
        with lock:
            v.value += 1

    def work(_who, n):
        return loop(n, op)

    def run(n):
        v.value = 0
        ns, ops, ok = two_procs(work, n)
        return ns, ops[0] + ops[1], ok and check_total(v, ops)
    return run


def make_add2(v):
    add = v.add

    def op(_i):
        add(1)

    def work(_who, n):
        return loop(n, op)

    def run(n):
        v.value = 0
        ns, ops, ok = two_procs(work, n)
        return ns, ops[0] + ops[1], ok and check_total(v, ops)
    return run


def make_inline2(val, stmt, **env):
    """A two-process row of the inline kind on val (exact total checked)."""
    run_loop = inline(stmt, **env)

    def work(_who, n):
        return run_loop(n)

    def run(n):
        val.value = 0
        ns, ops, ok = two_procs(work, n)
        return ns, ops[0] + ops[1], ok and check_total(val, ops)
    return run


def inline_rows(sv, mv, sa1k, ma1k, sa, q):
    """The *_inline rows (module docstring), the same targets."""
    def read(v):
        return v and make_inline1('v.value', lambda k: True, v=v)

    def write(v):
        return v and make_inline1('v.value = j & 0xffff',
                                  lambda k: v.value == (k - 1) & 0xffff, v=v)

    def sl(a):
        return a and make_inline1('a[:]', lambda k: len(a[:]) == 1000, a=a)

    def inc(v):
        return v and make_inline2(v, 'with lock:\n    v.value += 1', v=v,
                                  lock=v.get_lock())

    def add(v):
        return v and make_inline2(v, 'add(1)', add=v.add)
    note = ' (statement inline, no op(i) call)'
    compare('py_read_inline', "x = v.value on Value('i')" + note,
            'shval.Value', read(sv), 'multiprocessing.Value', read(mv), 0.25,
            'target >= 4x faster', q)
    compare('py_write_inline', "v.value = i on Value('i')" + note,
            'shval.Value', write(sv), 'multiprocessing.Value', write(mv), 0.25,
            'target >= 4x faster', q)
    compare('py_slice_1000_inline', "a[:] on Array('i', 1000)" + note,
            'shval.Array', sl(sa1k), 'multiprocessing.Array', sl(ma1k), 0.25,
            'target >= 4x faster', q)
    compare('py_locked_inc_2p_inline', 'with v.get_lock(): v.value += 1, 2 '
            'processes, exact total' + note, 'shval.Value', inc(sv),
            'multiprocessing.Value', inc(mv), 1 / 3,
            'target >= 3x faster; ns/op counts both processes', q)
    compare('py_add_2p_inline', "v.add(1) on shval.Value('i'), 2 processes, "
            "vs multiprocessing's locked increment" + note,
            'shval.Value.add', add(sv), 'multiprocessing.Value locked +=1',
            inc(mv), 0.05, 'target >= 20x faster', q)
    compare('py_add_2p_atomic_inline', "v.add(1) on shval.RawValue('i'), 2 "
            "processes, vs multiprocessing's locked increment" + note,
            'shval.RawValue.add', add(sa), 'multiprocessing.Value locked +=1',
            inc(mv), 0.05, 'extra row: the atomic mode', q)


def make_ping_shval(v):
    def wait_for(want):
        while True:
            ver = v.version
            x = v.value
            if x == want or x == -1:
                return x
            v.wait(version=ver)

    def work(who, n):
        k = 0
        if who:
            while True:
                if wait_for(2 * k + 1) == -1:
                    return k
                v.value = 2 * k + 2
                k += 1
        while k < n and (k & 15 or now() < STOP_AT[0]):
            v.value = 2 * k + 1
            wait_for(2 * k + 2)
            k += 1
        v.value = -1
        return k

    def run(n):
        v.value = 0
        ns, ops, ok = two_procs(work, n)
        return ns, 2 * ops[0], ok and ops[0] == ops[1]
    return run


def make_ping_event(e1, e2, stop):
    def work(who, n):
        k = 0
        if who:
            while True:
                e1.wait()
                e1.clear()
                if stop.value:
                    return k
                e2.set()
                k += 1
        while k < n and (k & 15 or now() < STOP_AT[0]):
            e1.set()
            e2.wait()
            e2.clear()
            k += 1
        stop.value = 1
        e1.set()
        return k

    def run(n):
        e1.clear()
        e2.clear()
        stop.value = 0
        ns, ops, ok = two_procs(work, n)
        return ns, 2 * ops[0], ok and ops[0] == ops[1]
    return run


def main():
    if A.quick:
        print('quick run: every case once for a tiny count; numbers are not '
              'measurements')
    else:
        print('%d reps of >= %.2f s per side, alternating (ABBA); python %s; '
              'loadavg %.2f' % (A.reps, A.min_sec, sys.version.split()[0],
                                loadavg()))
    q = 512
    sv = shval.Value('i') if shval else None
    mv = mpctx.Value('i')
    compare('py_read', "x = v.value on Value('i')",
            'shval.Value', sv and make_read(sv),
            'multiprocessing.Value', make_read(mv), 0.25,
            'target >= 4x faster', q)
    compare('py_write', "v.value = i on Value('i')",
            'shval.Value', sv and make_write(sv),
            'multiprocessing.Value', make_write(mv), 0.25,
            'target >= 4x faster', q)
    sa1k = shval.Array('i', 1000) if shval else None
    ma1k = mpctx.Array('i', 1000)
    compare('py_slice_1000', "a[:] on Array('i', 1000)",
            'shval.Array', sa1k and make_slice(sa1k),
            'multiprocessing.Array', make_slice(ma1k), 0.25,
            'target >= 4x faster', q)
    compare('py_locked_inc_2p', "with v.get_lock(): v.value += 1, 2 processes, "
            'exact total', 'shval.Value', sv and make_locked_inc2(sv),
            'multiprocessing.Value', make_locked_inc2(mv), 1 / 3,
            'target >= 3x faster; ns/op counts both processes', q)
    compare('py_add_2p', "v.add(1) on shval.Value('i'), 2 processes, exact "
            "total, vs multiprocessing's locked increment",
            'shval.Value.add', sv and make_add2(sv),
            'multiprocessing.Value locked +=1', make_locked_inc2(mv), 0.05,
            'target >= 20x faster', q)
    sa = shval.RawValue('i') if shval else None
    compare('py_add_2p_atomic', "v.add(1) on shval.RawValue('i') (atomic), 2 "
            "processes, vs multiprocessing's locked increment",
            'shval.RawValue.add', sa and make_add2(sa),
            'multiprocessing.Value locked +=1', make_locked_inc2(mv), 0.05,
            'extra row: the atomic mode', q)
    compare('py_wake_pingpong', 'two processes alternately set v.value and '
            'v.wait() for the other, vs multiprocessing.Event ping-pong',
            'shval.Value wait', sv and make_ping_shval(sv),
            'multiprocessing.Event', make_ping_event(mpctx.Event(), mpctx.Event(),
                                                     mpctx.RawValue('i')),
            1 / 3, 'target >= 3x faster; ns/op = one hand-off',
            20)
    inline_rows(sv, mv, sa1k, ma1k, sa, q)


main()
