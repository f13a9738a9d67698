"""Manual check (not a test: its outcome is probabilistic) that the
exact-total tests in test_processes.py can see lost updates: the same
harness, run with the read-modify-write *without* the lock, must lose
updates every time.  Run from the build tree:

    PYTHONPATH=build/python python3 python/tests/check_lost_updates.py [runs]
"""
import multiprocessing
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import shval  # noqa: E402
from test_processes import run_together  # noqa: E402


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    bad = 0
    for method in ('fork', 'spawn', 'forkserver'):
        ctx = multiprocessing.get_context(method)
        for _ in range(runs):
            v = shval.Value('i', 0)
            total, overlaps = run_together(ctx, 'unlocked', v)
            lost = total - v.value
            print('%-10s increments %7d  interleavings %6d  lost %6d'
                  % (method, total, overlaps, lost))
            bad += lost <= 0
    print('runs that lost nothing: %d' % bad)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
