#!/usr/bin/python3
"""bench/bench_metrics.py -- the metrics rows (issue 16): shval.metrics and
`shval serve` against prometheus_client's multiprocess mode (Debian's
python3-prometheus-client, PROMETHEUS_MULTIPROC_DIR in a temporary
directory), in one program, alternating repetitions (ABBA).

    /usr/bin/python3 bench/bench_metrics.py [--build DIR] [--quick]
        [--reps N] [--min-sec S] [--only CASE] [--json F]

Rows (ratio = shval s/op / prometheus_client s/op; "N x faster" = 1/ratio):
  metrics_inc          Counter.inc() on a counter without labels, one
                       process (a pre-fork worker's hot path)
  metrics_inc_labels   Counter.labels('200').inc()
  metrics_scrape_64w   one scrape of 100 counter families x 10 label values
                       (1,000 series) that 64 forked workers each incremented
                       once: an HTTP GET of /metrics from `shval serve`
                       (keep-alive connection, as Prometheus scrapes) vs
                       MultiProcessCollector + generate_latest() in this
                       process (no HTTP: the baseline's best case)
  metrics_scrape_64w_py  the same, shval side Registry.generate_latest()
  metrics_scrape_churn shval's scrape after 256 workers came and went /
                       its scrape after 64 (same run; target: no growth,
                       ratio <= 1.5 allowing for noise); the note gives
                       prometheus_client's growth over the same workers
Every scrape row checks the text: each series counts exactly the workers
that ran.  The inc rows check the final count.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
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

BUILD = os.path.abspath(A.build)
CLI = os.path.join(BUILD, 'shval')
PROMDIR = tempfile.mkdtemp(prefix='shval-bench-prom.')
os.environ['PROMETHEUS_MULTIPROC_DIR'] = PROMDIR  # before the import
sys.path.insert(0, os.path.join(BUILD, 'python'))
SKIP = None
try:
    import prometheus_client as pc
    from prometheus_client import multiprocess
except ImportError as e:
    SKIP = ('skipped: prometheus_client missing (make deps installs Debian\'s '
            'python3-prometheus-client): %s' % e)
try:
    from shval.metrics import Registry, Counter
except Exception as e:  # noqa: BLE001 -- any import failure: not built
    SKIP = SKIP or 'skipped: binding not built (%s: %s)' % (
        type(e).__name__, e)

now = time.perf_counter_ns
SEGS = []


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


def timed(op, sec, batch):
    """Run op() in batches until sec seconds passed (at least one batch);
    -> (ns, ops)."""
    t0 = now()
    stop = t0 + int(sec * 1e9)
    k = 0
    while True:
        for _ in range(batch):
            op()
        k += batch
        t = now()
        if t >= stop or A.quick:
            return t - t0, k


def compare(name, what, a_fn, b_fn, target_max, note, batch, sec=None,
            a_label='shval', b_label='prometheus_client', check=None):
    if not selected(name):
        return
    if SKIP:
        print('%-22s %s' % (name, SKIP))
        emit({'case': name, 'what': what, 'skipped': SKIP, 'quick': A.quick,
              'target': 'ratio <= %.4g' % target_max,
              'target_max': target_max, 'met': None, 'note': note})
        return
    sec = sec or A.min_sec
    l0 = loadavg()
    sides = [[a_label, a_fn, []], [b_label, b_fn, []]]
    if not A.quick:
        for s in sides:  # warm-up
            timed(s[1], sec / 3, batch)
    n = 1 if A.quick else A.reps
    ratios = []
    for i in range(n):
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):
            ns, ops = timed(sides[k][1], sec, batch)
            sides[k][2].append(ns / ops)
        ratios.append(sides[0][2][-1] / sides[1][2][-1])
    if check and not check():
        raise SystemExit('%s: check failed' % name)
    ma, mb, rp = median(sides[0][2]), median(sides[1][2]), median(ratios)
    met = rp <= target_max
    print('%-22s shval %12.1f ns/op  %s %12.1f ns/op  ratio %6.3f '
          '(%.3f..%.3f) = %.1fx faster  target <= %.3g  %s'
          % (name, ma, b_label, mb, rp, min(ratios), max(ratios), 1 / rp,
             target_max, '(quick)' if A.quick else
             ('met' if met else 'MISSED')), flush=True)

    def stats(s):
        return {'label': s[0], 'median': median(s[2]), 'min': min(s[2]),
                'max': max(s[2]), 'ns_per_op': s[2]}
    emit({'case': name, 'what': what, 'shval_ns': ma, 'baseline_ns': mb,
          'ratio': rp, 'ratio_of_medians': ma / mb, 'ratio_min': min(ratios),
          'ratio_max': max(ratios), 'target': 'ratio <= %.4g' % target_max,
          'target_max': target_max, 'met': met, 'repetitions': n,
          'quick': A.quick, 'loadavg_before': l0, 'loadavg_after': loadavg(),
          'shval': stats(sides[0]), 'baseline': stats(sides[1]),
          'note': note, 'python': sys.version.split()[0]})


def new_segment():
    name = '/shval_bench_metrics_%d_%d' % (os.getpid(), len(SEGS))
    reg = Registry(name, size=64 << 20)
    SEGS.append(name)
    return name, reg


# ---- increments ----

def inc_rows():
    _, reg = new_segment()
    preg = pc.CollectorRegistry()
    sc = Counter('requests', 'Requests.', registry=reg)
    pcc = pc.Counter('requests', 'Requests.', registry=preg)
    scl = Counter('responses', 'Responses.', ['code'], registry=reg)
    pcl = pc.Counter('responses', 'Responses.', ['code'], registry=preg)
    counts = [0, 0]

    def s_inc():
        sc.inc()
        counts[0] += 1

    def p_inc():
        pcc.inc()
        counts[1] += 1

    def check():
        return (sc._default().get() == counts[0] and
                pcc._value.get() == counts[1])
    compare('metrics_inc', 'Counter.inc(), no labels, one process',
            s_inc, p_inc, 0.2, 'target >= 5x faster', 256, check=check)
    compare('metrics_inc_labels', "Counter.labels('200').inc()",
            lambda: scl.labels('200').inc(),
            lambda: pcl.labels('200').inc(), 0.2,
            'extra row: with a label lookup per call', 256)


# ---- scrapes ----

FAMILIES, LABELS = (3, 2) if A.quick else (100, 10)


class Scrape:
    """The same metrics in a shval segment and in prometheus_client, and
    workers that increment every series once and exit."""

    def __init__(self):
        self.seg, self.reg = new_segment()
        self.sc = [Counter('family%d' % i, 'Family %d.' % i, ['k'],
                           registry=self.reg) for i in range(FAMILIES)]
        self.preg = pc.CollectorRegistry()
        self.pcs = [pc.Counter('family%d' % i, 'Family %d.' % i, ['k'],
                               registry=self.preg) for i in range(FAMILIES)]
        self.workers = 0
        self.serve = subprocess.Popen(
            [CLI, 'serve', self.seg, '--listen', '127.0.0.1:0'],
            stdout=subprocess.PIPE, text=True)
        line = self.serve.stdout.readline()
        m = re.search(r'http://([0-9.]+):(\d+)/metrics', line)
        if not m:
            raise SystemExit('shval serve did not start: %r' % line)
        self.conn = http.client.HTTPConnection(m.group(1), int(m.group(2)))
        self.collector = pc.CollectorRegistry()
        multiprocess.MultiProcessCollector(self.collector, path=PROMDIR)

    def grow(self, n):
        """n more workers came and went, two at a time."""
        for done in range(0, n, 2):
            pids = []
            for _ in range(min(2, n - done)):
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        for c in self.sc:
                            for k in range(LABELS):
                                c.labels(str(k)).inc()
                        for c in self.pcs:
                            for k in range(LABELS):
                                c.labels(str(k)).inc()
                        code = 0
                    finally:
                        os._exit(code)
                pids.append(pid)
            for pid in pids:
                _, st = os.waitpid(pid, 0)
                if os.waitstatus_to_exitcode(st) != 0:
                    raise SystemExit('a worker failed')
            self.workers += len(pids)

    def http(self):
        for attempt in (1, 2):
            try:
                self.conn.request('GET', '/metrics')
                r = self.conn.getresponse()
                body = r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionError):
                # an idle keep-alive connection closed by the server
                # (while workers came and went): connect again, as
                # Prometheus does
                self.conn.close()
                if attempt == 2:
                    raise
        if r.status != 200:
            raise SystemExit('shval serve: HTTP %d' % r.status)
        return body

    def py(self):
        return self.reg.generate_latest()

    def prom(self):
        return pc.generate_latest(self.collector)

    def check(self):
        want = FAMILIES * LABELS
        for what, text in (('shval serve', self.http()),
                           ('shval py', self.py()),
                           ('prometheus_client', self.prom())):
            got = re.findall(rb'^family\d+_total\{k="\d+"\} (\S+)$', text,
                             re.M)
            if len(got) != want or any(float(x) != self.workers
                                       for x in got):
                print('%s: %d series, values %s, want %d x %d' % (
                    what, len(got), sorted(set(got))[:5], want,
                    self.workers))
                return False
        return True

    def close(self):
        self.conn.close()
        self.serve.terminate()
        self.serve.wait()


def scrape_rows():
    if not any(selected(n) for n in ('metrics_scrape_64w',
                                     'metrics_scrape_64w_py',
                                     'metrics_scrape_churn')):
        return
    if SKIP:
        for n in ('metrics_scrape_64w', 'metrics_scrape_64w_py',
                  'metrics_scrape_churn'):
            compare(n, '', None, None, 0.1, '', 1)
        return
    first, total = (2, 4) if A.quick else (64, 256)
    s = Scrape()
    try:
        t = time.time()
        s.grow(first)
        print('(%d workers came and went in %.1f s)' % (first, time.time() - t),
              flush=True)
        sec = max(A.min_sec, 1.0)
        if not s.check():
            raise SystemExit('metrics_scrape_64w: check failed')
        compare('metrics_scrape_64w', '%d workers x %d series (%d families '
                'x %d labels): GET /metrics from shval serve vs '
                'MultiProcessCollector + generate_latest'
                % (first, FAMILIES * LABELS, FAMILIES, LABELS),
                s.http, s.prom, 0.1, 'target >= 10x faster', 1, sec=sec,
                a_label='shval serve', check=s.check)
        compare('metrics_scrape_64w_py', 'the same, shval side '
                'Registry.generate_latest() in Python',
                s.py, s.prom, 0.1, 'extra row: the Python exposition', 1,
                sec=sec, a_label='shval.metrics', check=s.check)
        if not selected('metrics_scrape_churn'):
            return
        # the churn row: the same scrapes after more workers came and went
        before = [[], []]
        reps = 1 if A.quick else A.reps
        for _ in range(reps):
            for k, f in enumerate((s.http, s.prom)):
                ns, ops = timed(f, sec, 1)
                before[k].append(ns / ops)
        t = time.time()
        s.grow(total - first)
        print('(%d more workers came and went in %.1f s)'
              % (total - first, time.time() - t), flush=True)
        if not s.check():
            raise SystemExit('metrics_scrape_churn: check failed')
        after = [[], []]
        for _ in range(reps):
            for k, f in enumerate((s.http, s.prom)):
                ns, ops = timed(f, sec, 1)
                after[k].append(ns / ops)
        g_s = median(after[0]) / median(before[0])
        g_p = median(after[1]) / median(before[1])
        files = len(os.listdir(PROMDIR))
        note = ('shval serve %.2f ms after %d workers, %.2f ms after %d; '
                'prometheus_client %.1f ms -> %.1f ms (x%.2f; %d files in '
                'its directory)' % (median(before[0]) / 1e6, first,
                                    median(after[0]) / 1e6, total,
                                    median(before[1]) / 1e6,
                                    median(after[1]) / 1e6, g_p, files))
        met = g_s <= 1.5
        print('%-22s shval scrape after %d / after %d workers: x%.2f  '
              'target <= 1.5  %s\n%22s %s' % (
                  'metrics_scrape_churn', total, first, g_s,
                  '(quick)' if A.quick else ('met' if met else 'MISSED'),
                  '', note), flush=True)
        emit({'case': 'metrics_scrape_churn',
              'what': "shval serve's scrape after %d workers came and went "
                      '/ after %d (1,000 series)' % (total, first),
              'shval_ns': median(after[0]), 'baseline_ns': median(before[0]),
              'ratio': g_s, 'ratio_of_medians': g_s,
              'ratio_min': min(after[0]) / max(before[0]),
              'ratio_max': max(after[0]) / min(before[0]),
              'target': 'ratio <= 1.5', 'target_max': 1.5, 'met': met,
              'repetitions': reps, 'quick': A.quick, 'note': note,
              'shval': {'label': 'after %d' % total, 'ns_per_op': after[0],
                        'median': median(after[0])},
              'baseline': {'label': 'after %d' % first,
                           'ns_per_op': before[0],
                           'median': median(before[0])},
              'prometheus_client_growth': g_p,
              'python': sys.version.split()[0]})
    finally:
        s.close()


def main():
    if A.quick:
        print('quick run: every case once for a tiny count; numbers are not '
              'measurements')
    try:
        if not SKIP:
            inc_rows()
        else:
            for n in ('metrics_inc', 'metrics_inc_labels'):
                compare(n, '', None, None, 0.2, '', 1)
        scrape_rows()
    finally:
        for name in SEGS:
            subprocess.run([CLI, 'unlink', name], capture_output=True)
        shutil.rmtree(PROMDIR, ignore_errors=True)


main()
