"""Child-process targets of test_lifetime.py (importable under spawn)."""
import os
import time

import shval


def memfd_segments(pid='self'):
    """Inodes of the shval memfd segments a process maps or holds open."""
    inodes = set()
    with open('/proc/%s/maps' % pid) as f:
        for line in f:
            if 'memfd:shval' in line:
                inodes.add(int(line.split()[4]))
    fddir = '/proc/%s/fd' % pid
    for fd in os.listdir(fddir):
        try:
            if os.readlink(os.path.join(fddir, fd)).startswith('/memfd:shval'):
                inodes.add(os.stat(os.path.join(fddir, fd)).st_ino)
        except OSError:
            pass
    return inodes


def read_first(a):
    return (a[0], len(a), len(memfd_segments()))


def bump_later(v, a, q):
    time.sleep(0.3)          # the parent has dropped its references by now
    with v.get_lock():
        v.value += 1
    a[len(a) - 1] = 7.0
    q.put((v.value >= 1, a[len(a) - 1]))


def start_workers(ctx, q, n):
    """Create a Value and an Array, start workers with them, return only
    the processes (issue 12, item 2)."""
    v = shval.Value('i', 0)
    a = shval.Array('d', 100000)       # 800 kB: a segment of its own
    ps = [ctx.Process(target=bump_later, args=(v, a, q)) for _ in range(n)]
    for p in ps:
        p.start()
    return ps


_kept = []


def keep(a):
    """Pool worker: hold an unpickled copy beyond the task."""
    _kept.append(a)
    return len(memfd_segments())


def read_kept(i):
    return _kept[i][0]


def drop_kept():
    _kept.clear()
    return len(memfd_segments())


def hold_and_wait(a, ready, go):
    ready.set()
    go.wait(30)
    os._exit(0 if a[0] == 3.0 else 1)
