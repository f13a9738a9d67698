#!/usr/bin/python3
"""bench/report.py -- merge the benchmark programs' JSON lines into
bench/results.json (machine, date, compiler, cases), print the table, and
write the same table as Markdown (for BENCHMARKS.md)."""
import argparse
import json
import os
import platform
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument('--fragments', required=True)
ap.add_argument('--out', required=True)
ap.add_argument('--markdown')
ap.add_argument('--started', default='')
ap.add_argument('--loadavg-before', default='')
ap.add_argument('--loadavg-after', default='')
ap.add_argument('--command', default='make bench')
A = ap.parse_args()


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True,
                              check=False).stdout.strip()
    except OSError:
        return ''


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


cases = []
with open(A.fragments) as f:
    for line in f:
        line = line.strip()
        if line:
            cases.append(json.loads(line))

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
res = {
    'command': A.command,
    'date': A.started,
    'machine': {
        'cpu': cpu_model(),
        'cpus': os.cpu_count(),
        'kernel': platform.release(),
        'loadavg_before': A.loadavg_before,
        'loadavg_after': A.loadavg_after,
    },
    'compiler': {
        'cc': sh('cc', '--version').splitlines()[0] if sh('cc', '--version') else '',
        'cxx': sh('c++', '--version').splitlines()[0] if sh('c++', '--version') else '',
        'build_type': 'Release',
    },
    'python': sh('/usr/bin/python3', '--version'),
    'git_commit': sh('git', '-C', root, 'rev-parse', '--short', 'HEAD'),
    'method': 'each case: both sides in one program, each rep time-bounded '
              '(min_sec), reps alternating in ABBA order; per side '
              'min/median/max ns/op; ratio = median over reps of '
              '(shval ns/op / baseline ns/op) of the same rep',
    'cases': cases,
}
with open(A.out, 'w') as f:
    json.dump(res, f, indent=1)
    f.write('\n')


def fmt_ns(x):
    return '%.1f' % x if x < 1000 else '%.0f' % x


rows = []
for c in cases:
    met = c.get('met')
    if c.get('quick'):
        state = 'quick'
    elif met is None:
        state = '—'
    else:
        state = 'met' if met else 'MISSED'
    if 'skipped' in c:
        rows.append((c['case'], '', '', c['skipped'], c.get('target', ''), '—'))
    elif 'value' in c:
        rows.append((c['case'], '%.1f %s' % (c['value'], c['unit']), '', '',
                     c.get('target', ''), state))
    else:
        r = c['ratio']
        spread = '%.3f (%.3f–%.3f)' % (r, c['ratio_min'], c['ratio_max'])
        if r < 1:
            spread += ', %.1fx faster' % (1 / r)
        rows.append((c['case'], fmt_ns(c['shval_ns']), fmt_ns(c['baseline_ns']),
                     spread, c['target'], state))

hdr = ('case', 'shval ns/op', 'baseline ns/op', 'ratio (min–max over reps)',
       'target', '')
w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
print()
print('  '.join(str(h).ljust(w[i]) for i, h in enumerate(hdr)))
for r in rows:
    print('  '.join(str(x).ljust(w[i]) for i, x in enumerate(r)))
m = res['machine']
print('\n%s, %s CPUs, loadavg %s -> %s; %s; wrote %s'
      % (m['cpu'], m['cpus'], m['loadavg_before'], m['loadavg_after'],
         res['compiler']['cc'], A.out))
if A.markdown:
    with open(A.markdown, 'w') as f:
        f.write('| ' + ' | '.join(hdr[:-1]) + ' | met |\n')
        f.write('|' + '---|' * len(hdr) + '\n')
        for r in rows:
            f.write('| ' + ' | '.join(str(x) for x in r) + ' |\n')
sys.exit(0)
