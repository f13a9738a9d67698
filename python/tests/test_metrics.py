"""shval.metrics (issue 16): counters, gauges in every multi-process mode and
histograms across real forked workers, a SIGKILLed worker, and the
exposition checked by promtool (Debian's prometheus package) when it is
installed (make deps installs it)."""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

import shval
from shval.metrics import Counter, Gauge, Histogram, Registry

PROMTOOL = shutil.which('promtool')


def fork(fn):
    """Run fn() in a forked child; return its pid (exit 0 on success)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    return pid


def join(pid, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p, status = os.waitpid(pid, os.WNOHANG)
        if p:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail('worker %d timed out' % pid)


def samples(text):
    """{series: value} from exposition text."""
    out = {}
    for line in text.decode().splitlines():
        if line and not line.startswith('#'):
            k, v = line.rsplit(' ', 1)
            out[k] = float(v)
    return out


def check_promtool(text):
    if not PROMTOOL:
        return
    r = subprocess.run([PROMTOOL, 'check', 'metrics'], input=text,
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), \
        (r.stdout + r.stderr).decode() + text.decode()


def test_counter_workers(segname):
    reg = Registry(segname)
    c = Counter('http_requests', 'Requests served.', ['code', 'path'],
                registry=reg)
    plain = Counter('jobs_total', 'Jobs.', registry=reg)

    def work():
        for i in range(2000):
            c.labels(code='200', path='/a b"\\').inc()
            plain.inc(0.5)
        c.labels('500', '/').inc(3)

    pids = [fork(work) for _ in range(4)]
    for p in pids:
        assert join(p) == 0
    text = reg.generate_latest()
    s = samples(text)
    assert s['http_requests_total{code="200",path="/a b\\"\\\\"}'] == 8000
    assert s['http_requests_total{code="500",path="/"}'] == 12
    assert s['jobs_total'] == 4000
    assert b'# TYPE http_requests_total counter' in text
    check_promtool(text)
    with pytest.raises(ValueError):
        plain.inc(-1)
    with pytest.raises(ValueError):
        c.labels(code='200')  # a label missing
    with pytest.raises(ValueError):
        Counter('jobs', 'again', registry=reg)  # duplicate
    with pytest.raises(ValueError):
        Counter('bad-name', 'x', registry=reg)


def gauge_run(segname, mode):
    """Three workers set the gauge to 10, 20, 30 and wait; the one with 30
    is SIGKILLed.  Returns the registry and gauge."""
    reg = Registry(segname)
    g = Gauge('inflight', 'In flight.', ['pool'], registry=reg,
              multiprocess_mode=mode)
    ready = shval.Value('q', 0, lock=False)
    go = shval.Value('q', 0, lock=False)
    pids = []
    for x in (10, 20, 30):
        def work(x=x):
            g.labels(pool='a').set(x)
            ready.add(1)
            while go.value == 0:
                go.wait(timeout=1)
        pids.append(fork(work))
    deadline = time.monotonic() + 60
    while ready.value < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.value == 3
    before = samples(reg.generate_latest())['inflight{pool="a"}']
    os.kill(pids[2], signal.SIGKILL)
    join(pids[2])
    after = reg.generate_latest()
    check_promtool(after)
    names_after = reg.seg.names('inflight')
    go.value = 1
    for p in pids[:2]:
        assert join(p) == 0
    return reg, before, samples(after)['inflight{pool="a"}'], names_after, \
        pids[2]


def test_gauge_livesum_killed_worker(segname):
    reg, before, after, names, dead = gauge_run(segname, 'livesum')
    assert before == 60
    assert after == 30  # the killed worker's 30 is dropped
    assert 'inflight{pool="a"}@%d' % dead not in names  # and removed
    # the CLI's exporter agrees (it drops dead pids itself)
    cli = os.environ.get('SHVAL_CLI')
    if cli:
        out = subprocess.run([cli, 'export', segname], capture_output=True,
                             timeout=60).stdout
        # both survivors exited meanwhile: their values are dropped too
        assert b'inflight' not in out.replace(b'# shval', b'')
    # after all workers exited, the exposition of live processes is empty
    s = samples(reg.generate_latest())
    assert s.get('inflight{pool="a"}', 0) == 0
    assert [n for n in reg.seg.names('inflight') if '@' in n] == []


@pytest.mark.parametrize('mode,want_after', [('sum', 60), ('max', 30),
                                             ('min', 10)])
def test_gauge_modes_keep_dead(segname, mode, want_after):
    reg, before, after, names, dead = gauge_run(segname, mode)
    assert after == want_after
    assert 'inflight{pool="a"}@%d' % dead not in names  # folded ...
    assert 'inflight{pool="a"}@dead' in names  # ... into @dead
    # all exited: the values stay, folded into one value
    s = samples(reg.generate_latest())
    assert s['inflight{pool="a"}'] == want_after
    assert [n for n in reg.seg.names('inflight') if '@' in n] == \
        ['inflight{pool="a"}@dead']


def test_nothing_piles_up(segname):
    reg = Registry(segname)
    g = Gauge('busy', 'Busy.', registry=reg, multiprocess_mode='sum')
    h = Histogram('lat_seconds', 'Latency.', registry=reg,
                  buckets=[0.1, 1])
    for i in range(30):  # workers come and go
        def work(i=i):
            g.inc(1)
            h.observe(i / 10)
        assert join(fork(work)) == 0
        reg.collect_dead()
    names = reg.seg.names()
    assert len([n for n in names if n.startswith('busy@')]) == 1, names
    assert len(names) < 15, names
    text = reg.generate_latest()
    s = samples(text)
    assert s['busy'] == 30
    assert s['lat_seconds_count'] == 30
    assert s['lat_seconds_bucket{le="0.1"}'] == 2  # 0.0 and 0.1
    assert s['lat_seconds_bucket{le="1"}'] == 11
    assert s['lat_seconds_bucket{le="+Inf"}'] == 30
    assert abs(s['lat_seconds_sum'] - sum(i / 10 for i in range(30))) < 1e-9
    check_promtool(text)
    # buckets in order, le last
    lines = [l for l in text.decode().splitlines() if '_bucket' in l]
    assert [re.search(r'le="([^"]*)"', l).group(1) for l in lines] == \
        ['0.1', '1', '+Inf']


def test_reused_pid_value_is_folded(segname):
    """A value NAME@PID left by an earlier process with this pid is not
    taken over: it is folded (here: dropped, livesum) first."""
    reg = Registry(segname)
    reg.seg.value('g@%d' % os.getpid(), 'd', 5.0, lock=False)
    g = Gauge('g', 'G.', registry=reg, multiprocess_mode='livesum')
    g.inc(1)
    assert samples(reg.generate_latest())['g'] == 1


def test_mode_mismatch(segname):
    reg = Registry(segname)
    Gauge('g', 'G.', registry=reg, multiprocess_mode='max')
    reg2 = Registry(segname)
    with pytest.raises(ValueError, match='mode'):
        Gauge('g', 'G.', registry=reg2, multiprocess_mode='min')
    with pytest.raises(ValueError, match='multiprocess_mode'):
        Gauge('h', 'H.', registry=reg2, multiprocess_mode='all')


def test_gauge_child_after_fork_has_its_own_value(segname):
    """The parent used the gauge before forking: the child (found by the
    fork hook that keeps the cached pid, not os.getpid() per call) writes
    a value of its own, NAME@CHILD, and the parent's stays its own."""
    reg = Registry(segname)
    g = Gauge('g', 'G.', registry=reg, multiprocess_mode='max')
    c = Counter('c', 'C.', registry=reg)
    g.set(1)
    c.inc()
    r, w = os.pipe()

    def work():
        g.set(7)
        c.inc()
        os.write(w, b'%d' % os.getpid())
    pid = fork(work)
    assert join(pid) == 0
    assert int(os.read(r, 32)) == pid
    os.close(r)
    os.close(w)
    assert reg.seg['g@%d' % os.getpid()].value == 1
    assert reg.seg['g@%d' % pid].value == 7
    s = samples(reg.generate_latest())
    assert s['g'] == 7  # max over the parent (1) and the dead child (7)
    assert s['c_total'] == 2
    assert 'g@%d' % pid not in reg.seg.names('g')  # folded at the scrape


@pytest.mark.parametrize('mode', ['sum', 'livesum'])
def test_workers_fold_their_predecessors(segname, mode):
    """Workers come and go and nobody calls generate_latest() (the scrapes
    are shval serve's): each new worker's first use of the gauge folds the
    values of workers that went, so at most the live ones and @dead stay."""
    reg = Registry(segname)
    g = Gauge('busy', 'Busy.', ['k'], registry=reg, multiprocess_mode=mode)
    for i in range(20):
        def work():
            for k in range(3):
                g.labels(k=str(k)).inc(1)
        assert join(fork(work)) == 0
    per_pid = [n for n in reg.seg.names('busy') if '@' in n and
               not n.endswith('@dead')]
    assert len(per_pid) == 3, per_pid  # only the last worker's
    cli = os.environ.get('SHVAL_CLI')
    if cli:
        out = subprocess.run([cli, 'export', segname], capture_output=True,
                             timeout=60).stdout
        s = samples(out)
        want = 20 if mode == 'sum' else None
        for k in range(3):
            assert s.get('busy{k="%d"}' % k) == want
