#!/usr/bin/python3
"""Tests of `shval export` and `shval serve` (issue 16), run by ctest as
    metrics_test.py SHVAL_BINARY BUILD_DIR CASE
one case per ctest entry.  Needs promtool and prometheus (Debian's
prometheus package, installed by `make deps`): a missing tool fails the
test.  Segments are /shval-mt-PID-*, removed at the end; temporary files
live under BUILD_DIR; every process started here is stopped here, every
wait is bounded."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SHVAL, BUILD, CASE = sys.argv[1], sys.argv[2], sys.argv[3]
SEGS = []
PROCS = []


def sh(*args, check=True, input=None):
    r = subprocess.run([SHVAL, *args], capture_output=True, text=True,
                       input=input, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError('shval %s: rc %d: %s' % (' '.join(args),
                                                      r.returncode, r.stderr))
    return r


def new_seg(tag):
    name = '/shval-mt-%d-%s' % (os.getpid(), tag)
    sh('new', name)
    SEGS.append(name)
    return name


def dead_pid():
    p = subprocess.Popen(['true'])
    p.wait()
    return p.pid


def fill(seg):
    """Counters, gauges, labels, odd names, a histogram, per-process
    gauges; returns the dict of lines the export must contain."""
    c = lambda *a: sh('create', seg, *a)
    c('http_requests_total{method="get",code="200"}', 'q', '--atomic', '5')
    c('http_requests_total{code="500",method="get"}', 'q', '--atomic', '2')
    c('app.temp-celsius', 'd', '21.5')
    c('9lives', 'i', '9')
    c('odd{path="/a\\"b\\\\c\\nd",x:y="1"}', 'd', '1.25')
    c('odd#help', '64s', 'Odd one \\ with a backslash')
    c('jobs', 'q', '--atomic', '3')
    c('jobs#type', '16s', 'counter')
    c('lat_bucket{le="0.1"}', 'q', '1')
    c('lat_bucket{le="1"}', 'q', '3')
    c('lat_bucket{le="+Inf"}', 'q', '4')
    c('lat_sum', 'd', '2.5')
    c('lat_count', 'q', '4')
    c('lat#type', '16s', 'histogram')
    c('lat#help', '32s', 'request latency')
    c('vec', '3d', '1', '2.5', '-3')
    c('pt', 'x:d y:d name:8s n:2q ok:?', 'x=1', 'y=2', 'n=7,8', 'ok=true')
    c('name', '16s', 'a string')
    c('bad{x=1}', 'q', '1')
    c('bigu', 'Q', '18446744073709551615')
    c('nan_level', 'd', 'nan')
    c('inf_level', 'd', '-inf')
    # per-process contributions: livesum drops the dead one
    c('workers{pool="a"}@%d' % os.getpid(), 'd', '4')
    c('workers{pool="a"}@%d' % dead_pid(), 'd', '100')
    c('workers{pool="a"}@dead', 'd', '0.5')
    c('workers#mode', '16s', 'livesum')
    c('peak@%d' % os.getpid(), 'd', '4')
    c('peak@%d' % dead_pid(), 'd', '9')
    c('peak#mode', '16s', 'max')
    return [
        '# TYPE http_requests_total counter',
        'http_requests_total{code="200",method="get"} 5',
        'http_requests_total{code="500",method="get"} 2',
        '# TYPE app_temp_celsius gauge', 'app_temp_celsius 21.5',
        '_9lives 9',
        'odd{path="/a\\"b\\\\c\\nd",x_y="1"} 1.25',
        '# HELP odd Odd one \\\\ with a backslash',
        '# TYPE jobs_total counter', 'jobs_total 3',
        '# HELP lat request latency', '# TYPE lat histogram',
        'lat_bucket{le="0.1"} 1', 'lat_bucket{le="1"} 3',
        'lat_bucket{le="+Inf"} 4', 'lat_sum 2.5', 'lat_count 4',
        'vec{index="0"} 1', 'vec{index="1"} 2.5', 'vec{index="2"} -3',
        'pt{field="x"} 1', 'pt{field="y"} 2', 'pt{field="ok"} 1',
        'pt{field="n",index="0"} 7', 'pt{field="n",index="1"} 8',
        'bigu 1.8446744073709552e+19', 'nan_level NaN', 'inf_level -Inf',
        'workers{pool="a"} 4.5', 'peak 9',
    ]


def promtool(text):
    r = subprocess.run(['promtool', 'check', 'metrics'], input=text,
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def case_export_promtool():
    seg = new_seg('exp')
    want = fill(seg)
    seg2 = new_seg('exp2')
    sh('create', seg2, 'other_total{seg="2"}', 'q', '--atomic', '11')
    # the same series in both segments: the second is skipped, named
    sh('create', seg2, 'jobs', 'q', '--atomic', '1')
    out = sh('export', seg, seg2).stdout
    lines = out.splitlines()
    for w in want + ['other_total{seg="2"} 11']:
        assert w in lines, 'missing %r in:\n%s' % (w, out)
    assert any(l.startswith('# shval: skipped %s name: a string' % seg)
               for l in lines), out
    assert any(l.startswith('# shval: skipped %s bad{x=1}: a label value '
                            'not in double quotes' % seg) for l in lines), out
    assert '# shval: skipped a second value for jobs_total{}' in lines, out
    # each family once, contiguous: one TYPE line per family
    types = [l.split()[2] for l in lines if l.startswith('# TYPE ')]
    assert len(types) == len(set(types)), out
    assert not any('#' in l.split()[0] for l in lines
                   if not l.startswith('#')), out
    rc, msg = promtool(out)
    assert rc == 0 and not msg.strip(), 'promtool: rc %d\n%s\n%s' % (
        rc, msg, out)
    # promtool is not a rubber stamp: the same text with one sample
    # broken, a counter without _total, and a family split in two fail
    for bad in (out + 'broken{x="1" 1\n',
                out.replace('jobs_total', 'jobs'),
                out + '# TYPE lat histogram\nlat_sum 1\n'):
        rc, msg = promtool(bad)
        assert rc != 0, 'promtool accepted:\n' + bad


def case_export_errors():
    r = sh('export', check=False)
    assert r.returncode == 2 and 'missing SEG' in r.stderr, r.stderr
    r = sh('export', '--nope', '/x', check=False)
    assert r.returncode == 2 and "unknown option '--nope'" in r.stderr
    name = '/shval-mt-%d-missing' % os.getpid()
    r = sh('export', name, check=False)
    assert r.returncode == 1 and name in r.stderr, r.stderr
    r = sh('export', '--help')
    assert 'usage: shval export SEG...' in r.stdout
    r = sh('help')
    assert 'export SEG...' in r.stdout and 'serve SEG...' in r.stdout
    # an empty segment: empty text, valid
    seg = new_seg('empty')
    assert sh('export', seg).stdout == ''
    r = sh('serve', seg, '--listen', 'nohost:1', check=False)
    assert r.returncode == 2 and "bad --listen 'nohost:1'" in r.stderr


def start_serve(*segs):
    p = subprocess.Popen([SHVAL, 'serve', *segs, '--listen', '127.0.0.1:0'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    PROCS.append(p)
    line = p.stdout.readline()
    m = re.match(r'listening on (http://127\.0\.0\.1:(\d+))/metrics$',
                 line.strip())
    assert m, 'serve printed %r (stderr %r)' % (line, p.stderr.read()
                                                if p.poll() is not None
                                                else '')
    return p, m.group(1), int(m.group(2))


def get(url, method='GET'):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get('Content-Type'), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get('Content-Type'), e.read().decode()


def stop(p, sig):
    p.send_signal(sig)
    try:
        return p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError('serve did not stop on signal %d' % sig)


def case_serve_http():
    seg = new_seg('srv')
    sh('create', seg, 'hits_total', 'q', '--atomic', '0')
    p, base, _ = start_serve(seg)
    st, ctype, body = get(base + '/metrics')
    assert st == 200 and 'hits_total 0' in body.splitlines(), (st, body)
    assert ctype.startswith('text/plain; version=0.0.4'), ctype
    assert promtool(body)[0] == 0
    assert get(base + '/')[0] == 404
    assert get(base + '/metricsx')[0] == 404
    assert get(base + '/metrics', 'POST')[0] == 405
    assert get(base + '/metrics', 'HEAD')[0] == 200
    # values change as other processes add
    adders = [subprocess.Popen([SHVAL, 'add', seg, 'hits_total', '1'],
                               stdout=subprocess.DEVNULL) for _ in range(5)]
    for a in adders:
        assert a.wait(60) == 0
    body = get(base + '/metrics')[2]
    assert 'hits_total 5' in body.splitlines(), body
    # a value created after the start shows up
    sh('create', seg, 'late', 'd', '2.5')
    assert 'late 2.5' in get(base + '/metrics')[2].splitlines()
    assert stop(p, signal.SIGTERM) == 0
    p2, base2, _ = start_serve(seg)
    assert 'late 2.5' in get(base2 + '/metrics')[2].splitlines()
    assert stop(p2, signal.SIGINT) == 0
    # the port is free again: nothing listens
    try:
        get(base2 + '/metrics')
        raise AssertionError('still served after SIGINT')
    except (urllib.error.URLError, ConnectionError):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def case_serve_prometheus():
    if not shutil.which('prometheus'):
        raise AssertionError('prometheus is not installed (make deps)')
    seg = new_seg('prom')
    sh('create', seg, 'jobs_done_total{queue="mail"}', 'q', '--atomic', '41')
    sh('create', seg, 'queue_depth', 'd', '7.5')
    p, _, port = start_serve(seg)
    tmp = tempfile.mkdtemp(prefix='prom-', dir=BUILD)
    prom = None
    try:
        cfg = os.path.join(tmp, 'prometheus.yml')
        with open(cfg, 'w') as f:
            f.write('global:\n  scrape_interval: 1s\n'
                    '  evaluation_interval: 1s\n'
                    'scrape_configs:\n  - job_name: shval\n'
                    '    scrape_interval: 1s\n    scrape_timeout: 1s\n'
                    '    static_configs:\n'
                    "      - targets: ['127.0.0.1:%d']\n" % port)
        for attempt in range(3):
            pport = free_port()
            log = open(os.path.join(tmp, 'prometheus.log'), 'w')
            prom = subprocess.Popen(
                ['prometheus', '--config.file=' + cfg,
                 '--storage.tsdb.path=' + os.path.join(tmp, 'data'),
                 '--web.listen-address=127.0.0.1:%d' % pport],
                stdout=log, stderr=log)
            PROCS.append(prom)
            api = 'http://127.0.0.1:%d/api/v1/query?query=' % pport
            deadline = time.monotonic() + 60
            up = False
            while time.monotonic() < deadline and prom.poll() is None:
                try:
                    # 503 "Service Unavailable" until it is ready
                    if get('http://127.0.0.1:%d/-/ready' % pport)[0] == 200:
                        up = True
                        break
                except (urllib.error.URLError, ConnectionError, OSError):
                    pass
                time.sleep(0.2)
            if up:
                break
            stop(prom, signal.SIGTERM) if prom.poll() is None else None
        assert up, open(os.path.join(tmp, 'prometheus.log')).read()[-3000:]

        import json

        def query(q):
            st, _, body = get(api + urllib.request.quote(q))
            if st == 503:  # not ready yet (a slow start under load)
                return None
            assert st == 200, body
            res = json.loads(body)['data']['result']
            return [(r['metric'], r['value'][1]) for r in res]

        def wait_for(q, want):
            deadline = time.monotonic() + 90
            last = None
            while time.monotonic() < deadline:
                last = query(q)
                if last and last[0][1] == want:
                    return last
                time.sleep(0.5)
            raise AssertionError('%s: %r, want %s' % (q, last, want))

        r = wait_for('jobs_done_total{queue="mail"}', '41')
        assert r[0][0]['job'] == 'shval', r
        wait_for('queue_depth', '7.5')
        sh('add', seg, 'jobs_done_total{queue="mail"}', '1')
        wait_for('jobs_done_total{queue="mail"}', '42')
        wait_for('up{job="shval"}', '1')
    finally:
        if prom and prom.poll() is None:
            stop(prom, signal.SIGTERM)
        if p.poll() is None:
            stop(p, signal.SIGTERM)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    try:
        globals()['case_' + CASE]()
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
                p.wait()
        for s in SEGS:
            subprocess.run([SHVAL, 'unlink', s], capture_output=True)
    print('ok', CASE)


main()
