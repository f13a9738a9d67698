"""Child-process targets of test_mp_extras.py (importable under spawn)."""
import os
import time

import shval


def cond_waiter(cond, flag, woke):
    with cond:
        while not flag.value:
            if not cond.wait(30):
                return
        woke.add(1)


def die_holding(lock):
    lock.acquire()
    os._exit(0)


def sem_taker(sem, got):
    if sem.acquire(timeout=30):
        got.add(1)


def event_waiter(ev, seen):
    if ev.wait(30):
        seen.add(1)


def barrier_party(b, out):
    i = b.wait(30)
    out.add(1 << i)


def release_other(sem):
    sem.release()


def ctx_child(v, lock):
    with lock:
        v.value += 1


def release_in_child(lock):
    try:
        lock.release()
    except ValueError as e:
        os._exit(0 if 'not held by this thread' in str(e) else 2)
    os._exit(1)


def bump_after(v, delay):
    time.sleep(delay)
    v.add(1)
