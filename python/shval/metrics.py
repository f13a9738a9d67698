"""shval.metrics: Prometheus metrics shared by the processes of a pre-fork
server, in one shval segment (pure Python on top of the binding).

    from shval.metrics import Registry, Counter, Gauge, Histogram
    reg = Registry('/myapp')                       # before forking workers
    REQS = Counter('http_requests', 'Requests', ['code'], registry=reg)
    INFL = Gauge('inflight', 'In flight', registry=reg,
                 multiprocess_mode='livesum')
    ... fork workers ...
    REQS.labels(code='200').inc()                  # one atomic add
    reg.generate_latest()                          # or `shval serve /myapp`

Layout in the segment (the naming convention of `shval export`, see
shval(1) METRICS, so `shval export`/`shval serve` expose the same text):

* Counter NAME: one atomic 'd' value "NAME_total{labels}" shared by every
  process (inc() is one atomic add; a dead worker's counts stay, as counts
  should), help in "NAME_total#help".
* Gauge NAME: one atomic 'd' value per process, "NAME{labels}@PID", mode in
  "NAME#mode": sum (all processes, dead ones included), max, min, livesum
  (processes alive now only).  Values of dead processes are folded (sum,
  max, min: into "NAME{labels}@dead") or dropped (livesum) by
  collect_dead(), which generate_latest() and the first use of a gauge in a
  process call, so nothing piles up as workers come and go.  A pid reused
  by a new process finds its predecessor's value and folds it first.
* Histogram NAME: atomic 'q' values "NAME_bucket{labels,le="B"}"
  (cumulative), "NAME_count{labels}" and an atomic 'd' "NAME_sum{labels}",
  shared by every process; type in "NAME#type".

Label values may hold any text: characters that value names cannot hold
(space, controls) are written as \\xHH, quotes and backslashes escaped.  A
value name is at most 255 bytes: ValueError beyond.
"""
import math
import os
import re
import threading

from . import _shval

__all__ = ['Registry', 'Counter', 'Gauge', 'Histogram', 'generate_latest',
           'CONTENT_TYPE_LATEST']

CONTENT_TYPE_LATEST = 'text/plain; version=0.0.4; charset=utf-8'
GAUGE_MODES = ('sum', 'max', 'min', 'livesum')
DEFAULT_BUCKETS = (.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5,
                   5.0, 7.5, 10.0, float('inf'))


# This process's pid, kept by a fork hook: os.getpid() is a system call
# (5 us on some VMs, more than the whole increment), and children of a
# fork must find their own per-process gauge values.  A process forked by
# C code that does not run Python's fork hooks (PyOS_AfterFork_Child) would
# keep its parent's pid here: its gauges would write the parent's values
# (counters and histograms are shared by all processes and not affected).
_PID = [os.getpid()]


def _after_fork():
    _PID[0] = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def _check_name(name, what='metric'):
    ok = name and not name[0].isdigit() and all(
        c == '_' or ('a' <= c <= 'z') or ('A' <= c <= 'Z') or
        ('0' <= c <= '9') for c in name)
    if not ok:
        raise ValueError('invalid %s name %r (want [A-Za-z_][A-Za-z0-9_]*)'
                         % (what, name))
    if what == 'label' and name.startswith('__'):
        raise ValueError('label name %r: "__" names are reserved' % name)


def _escape(v):
    out = []
    for ch in str(v):
        if ch in '\\"':
            out.append('\\' + ch)
        elif ch == '\n':
            out.append('\\n')
        elif ch == '\0':
            raise ValueError('a label value cannot hold a NUL character')
        elif ord(ch) <= 0x20 or ord(ch) == 0x7f:
            out.append('\\x%02x' % ord(ch))
        else:
            out.append(ch)
    return ''.join(out)


def _series(name, labels):
    """The value name NAME{a="x",...} (labels: sorted (name, value))."""
    if not labels:
        return name
    return name + '{' + ','.join('%s="%s"' % (k, _escape(v))
                                 for k, v in labels) + '}'


_LABEL_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def _expo(name):
    """The exposition form of a value name written by _series: labels
    re-escaped for Prometheus (\\xHH undone), "le" last; and a sort key
    (series without le, le as a number)."""
    base, brace, rest = name.partition('{')
    if not brace:
        return name, (name, 0.0)
    labels = []
    for m in _LABEL_RE.finditer(rest[:-1]):
        v = re.sub(r'\\(\\|x[0-9a-fA-F]{2}|n|")',
                   lambda g: {'\\': '\\', 'n': '\n', '"': '"'}.get(
                       g.group(1)) or chr(int(g.group(1)[1:], 16)),
                   m.group(2))
        labels.append((m.group(1), v))
    le = [v for k, v in labels if k == 'le']
    labels = [(k, v) for k, v in labels if k != 'le'] + [('le', v)
                                                         for v in le]
    text = base + '{' + ','.join(
        '%s="%s"' % (k, v.replace('\\', '\\\\').replace('"', '\\"')
                     .replace('\n', '\\n')) for k, v in labels) + '}'
    lev = float(le[0].replace('+Inf', 'inf')) if le else 0.0
    nole = text if not le else text[:text.rindex('le="')]
    return text, (nole, lev)


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _fmt(x):
    if math.isnan(x):
        return 'NaN'
    if math.isinf(x):
        return '+Inf' if x > 0 else '-Inf'
    if x == int(x) and abs(x) < 2 ** 53:
        return str(int(x))
    return repr(x)


def _rows(pairs):
    rows = []
    for n, v in pairs:
        text, key = _expo(n)
        rows.append((key, '%s %s\n' % (text, _fmt(v))))
    return [r for _, r in sorted(rows)]


class Registry:
    """The metrics of one segment.  Create it before forking workers (they
    inherit the open segment), or open it by name in each process."""

    def __init__(self, segment, create=True, size=None):
        if isinstance(segment, _shval.Segment):
            self.seg = segment
        else:
            kw = {'create': create}
            if size:
                kw['size'] = size
            self.seg = _shval.Segment(segment, **kw)
        self._metrics = {}
        self._lock = threading.Lock()

    def register(self, metric):
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError('duplicate metric %r' % metric.name)
            self._metrics[metric.name] = metric

    def _meta(self, name, text):
        b = text.encode()
        if len(b) > 255:
            raise ValueError('%s: more than 255 bytes' % name)
        if name in self.seg:
            v = self.seg[name]
        else:
            v = self.seg.value(name, '256s', b, lock=True)
        if v.value != b:
            v.value = b

    def collect_dead(self):
        """Fold (sum, max, min) or drop (livesum) the per-process values
        of gauges whose process is gone."""
        for m in list(self._metrics.values()):
            if isinstance(m, Gauge):
                m._collect_dead()

    def generate_latest(self):
        """The exposition (Prometheus text 0.0.4) of this registry's
        metrics, each value read once."""
        try:
            self.collect_dead()
        except PermissionError:
            pass  # a read-only segment: exposition only
        out = []
        for name in sorted(self._metrics):
            out.extend(self._metrics[name]._expose())
        return ''.join(out).encode()


def generate_latest(registry):
    return registry.generate_latest()


class _Metric:
    _type = None

    def __init__(self, name, documentation, labelnames=(), *, registry,
                 namespace='', subsystem='', unit=''):
        full = '_'.join(x for x in (namespace, subsystem, name) if x)
        if unit and not full.endswith('_' + unit):
            full += '_' + unit
        _check_name(full)
        labelnames = tuple(labelnames)
        for ln in labelnames:
            _check_name(ln, 'label')
        if len(set(labelnames)) != len(labelnames):
            raise ValueError('duplicate label names in %r' % (labelnames,))
        if not isinstance(registry, Registry):
            raise TypeError('registry must be a shval.metrics.Registry')
        self.name = full
        self.documentation = documentation
        self.labelnames = labelnames
        self.registry = registry
        self._children = {}
        self._clock = threading.Lock()
        self._setup()
        registry.register(self)

    def labels(self, *values, **kw):
        if not self.labelnames:
            raise ValueError('%s has no labels' % self.name)
        if values and kw:
            raise ValueError("labels(): positional or keyword, not both")
        if kw:
            if set(kw) != set(self.labelnames):
                raise ValueError('labels %r, want %r'
                                 % (sorted(kw), list(self.labelnames)))
            values = tuple(kw[n] for n in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError('%d label values, want %d'
                             % (len(values), len(self.labelnames)))
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None or child._pid != _PID[0]:
            with self._clock:
                child = self._children.get(key)
                if child is None or child._pid != _PID[0]:
                    child = self._child(
                        tuple(sorted(zip(self.labelnames, key))))
                    self._children[key] = child
        return child

    def _default(self):
        if self.labelnames:
            raise ValueError('%s has labels: use .labels(...)' % self.name)
        return self._nolabel()

    def _nolabel(self):
        child = self._children.get(())
        if child is None or child._pid != _PID[0]:
            with self._clock:
                child = self._children.get(())
                if child is None or child._pid != _PID[0]:
                    child = self._child(())
                    self._children[()] = child
        return child

    def _help_lines(self, family):
        doc = self.documentation.replace('\\', '\\\\').replace('\n', '\\n')
        return ['# HELP %s %s\n' % (family, doc),
                '# TYPE %s %s\n' % (family, self._type)]

    def _read_all(self, prefix):
        """[(value name, value)] of the values NAME{... / NAME@..."""
        seg = self.registry.seg
        res = []
        for n in seg.names(prefix):
            rest = n[len(prefix):]
            if rest and rest[0] not in '{@':
                continue
            try:
                res.append((n, seg[n].value))
            except KeyError:
                pass  # removed meanwhile
        return res


class _CounterChild:
    def __init__(self, value):
        self._v = value
        self._pid = _PID[0]

    def inc(self, amount=1):
        if amount < 0:
            raise ValueError('counters can only be incremented')
        self._v.add(float(amount))

    def get(self):
        return self._v.value


class Counter(_Metric):
    """A counter: every process adds to one shared atomic value."""
    _type = 'counter'

    def _setup(self):
        if self.name.endswith('_total'):
            self.name = self.name[:-6]
        self.registry._meta(self.name + '_total#help', self.documentation)

    def _child(self, labels):
        v = self.registry.seg.value(_series(self.name + '_total', labels),
                                    'd', 0.0, lock=False)
        return _CounterChild(v)

    def inc(self, amount=1):
        # the hot path of a pre-fork server, inlined: one dict lookup and
        # one atomic add
        child = self._children.get(())
        if child is None or child._pid != _PID[0]:
            child = self._default()
        if amount < 0:
            raise ValueError('counters can only be incremented')
        child._v.add(float(amount))

    def _expose(self):
        fam = self.name + '_total'
        vals = self._read_all(fam)
        if not vals:
            return []
        return self._help_lines(fam) + _rows(vals)


class _GaugeChild:
    def __init__(self, gauge, series):
        self._g = gauge
        self._pid = _PID[0]
        seg = gauge.registry.seg
        name = '%s@%d' % (series, self._pid)
        if name in seg:
            # a value left by an earlier process with this pid
            gauge._fold(name, series)
        self._v = seg.value(name, 'd', 0.0, lock=False)
        self._lock = threading.Lock()

    def inc(self, amount=1):
        self._v.add(float(amount))

    def dec(self, amount=1):
        self._v.add(-float(amount))

    def set(self, value):
        self._v.value = float(value)

    def get(self):
        return self._v.value

    def set_to_current_time(self):
        import time
        self.set(time.time())


class Gauge(_Metric):
    """A gauge: one value per process, combined per multiprocess_mode:
    'sum', 'max', 'min' (dead processes' last values included) or
    'livesum' (live processes only)."""
    _type = 'gauge'

    def __init__(self, name, documentation, labelnames=(), *, registry,
                 multiprocess_mode='sum', **kw):
        if multiprocess_mode not in GAUGE_MODES:
            raise ValueError('multiprocess_mode %r: want one of %s'
                             % (multiprocess_mode, ', '.join(GAUGE_MODES)))
        self.mode = multiprocess_mode
        super().__init__(name, documentation, labelnames, registry=registry,
                         **kw)

    def _setup(self):
        self._collected = _PID[0]
        self.registry._meta(self.name + '#help', self.documentation)
        seg = self.registry.seg
        mn = self.name + '#mode'
        if mn in seg:
            cur = seg[mn].value.decode()
            if cur != self.mode:
                raise ValueError('gauge %s has mode %r in the segment, not %r'
                                 % (self.name, cur, self.mode))
        else:
            self.registry._meta(mn, self.mode)
        self._collect_dead()

    def _child(self, labels):
        if self._collected != _PID[0]:
            # the first use in this process: fold what workers that went
            # left, so that per-process values do not pile up in the
            # segment while workers come and go, whoever scrapes
            self._collected = _PID[0]
            self._collect_dead()
        return _GaugeChild(self, _series(self.name, labels))

    def _fold(self, name, series):
        """Move the value `name` (of a gone process) into series@dead, or
        drop it (livesum).  The remove decides who folds it."""
        seg = self.registry.seg
        try:
            x = seg[name].value
            del seg[name]
        except KeyError:
            return
        if self.mode == 'livesum':
            return
        dead = seg.value(series + '@dead', 'd', 0.0 if self.mode == 'sum'
                         else x, lock=False)
        if self.mode == 'sum':
            dead.add(x)
            return
        better = max if self.mode == 'max' else min
        while True:
            cur = dead.value
            new = better(cur, x)
            if new == cur or dead.cas(cur, new):
                return

    def _collect_dead(self):
        seg = self.registry.seg
        for n in seg.names(self.name):
            series, at, pid = n.rpartition('@')
            if not at or not pid.isdigit() or (
                    series != self.name and
                    not series.startswith(self.name + '{')):
                continue
            if not _alive(int(pid)):
                self._fold(n, series)

    def inc(self, amount=1):
        self._default().inc(amount)

    def dec(self, amount=1):
        self._default().dec(amount)

    def set(self, value):
        self._default().set(value)

    def _expose(self):
        combined = {}
        for n, v in self._read_all(self.name):
            series, _, pid = n.rpartition('@')
            if not series:
                continue
            if self.mode == 'livesum' and pid != 'dead' and \
                    not _alive(int(pid)):
                continue
            if series in combined:
                a = combined[series]
                combined[series] = (max(a, v) if self.mode == 'max' else
                                    min(a, v) if self.mode == 'min' else
                                    a + v)
            else:
                combined[series] = v
        if not combined:
            return []
        return self._help_lines(self.name) + _rows(combined.items())


class _HistogramChild:
    def __init__(self, hist, labels):
        seg = hist.registry.seg
        self._pid = _PID[0]
        self._bounds = hist.buckets
        self._buckets = [
            seg.value(_series(hist.name + '_bucket',
                              tuple(sorted(labels + (('le', _fmt(b)),)))),
                      'q', 0, lock=False) for b in hist.buckets]
        self._sum = seg.value(_series(hist.name + '_sum', labels), 'd', 0.0,
                              lock=False)
        self._count = seg.value(_series(hist.name + '_count', labels), 'q', 0,
                                lock=False)

    def observe(self, amount):
        amount = float(amount)
        for b, v in zip(self._bounds, self._buckets):
            if amount <= b:
                v.add(1)
        self._sum.add(amount)
        self._count.add(1)


class Histogram(_Metric):
    """A histogram: cumulative bucket counters shared by every process."""
    _type = 'histogram'

    def __init__(self, name, documentation, labelnames=(), *, registry,
                 buckets=DEFAULT_BUCKETS, **kw):
        b = sorted(float(x) for x in buckets)
        if not b or b[-1] != float('inf'):
            b.append(float('inf'))
        if len(set(b)) != len(b):
            raise ValueError('duplicate buckets')
        if 'le' in labelnames:
            raise ValueError('a histogram cannot have a label "le"')
        self.buckets = tuple(b)
        super().__init__(name, documentation, labelnames, registry=registry,
                         **kw)

    def _setup(self):
        self.registry._meta(self.name + '#help', self.documentation)
        self.registry._meta(self.name + '#type', 'histogram')

    def _child(self, labels):
        return _HistogramChild(self, labels)

    def observe(self, amount):
        self._default().observe(amount)

    def _expose(self):
        rows = []
        for suffix in ('_bucket', '_count', '_sum'):
            for n, v in self._read_all(self.name + suffix):
                rows.append((n, v))
        if not rows:
            return []
        return self._help_lines(self.name) + _rows(rows)
