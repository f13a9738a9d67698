"""Child-process targets (module level so that spawn/forkserver can import them)."""
import ctypes
import os
import time

import shval


class Foo(ctypes.Structure):
    _fields_ = [('x', ctypes.c_int), ('y', ctypes.c_double), ('z', ctypes.c_longlong)]


class Point(ctypes.Structure):
    _fields_ = [('x', ctypes.c_double), ('y', ctypes.c_double)]


def set_values(values, news):
    for v, new in zip(values, news):
        v.value = new


def prefix_sums(arr):
    for i in range(1, len(arr)):
        arr[i] += arr[i - 1]


def double_all(x, y, foo, arr, string):
    x.value *= 2
    y.value *= 2
    foo.x *= 2
    foo.y *= 2
    string.value *= 2
    for i in range(len(arr)):
        arr[i] *= 2


def after_barrier(barrier, fn, *args):
    barrier.wait(60)
    fn(*args)


def add_n(v, n):
    for _ in range(n):
        v.add(1)


def locked_incr(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def lock_incr(lock, v, n):
    for _ in range(n):
        with lock:
            v.value += 1


def with_incr(v, n):
    for _ in range(n):
        with v:
            v.value += 1


def square(v):
    v.add(1)
    return v.value


def queue_consumer(q, out):
    v = q.get(timeout=30)
    v.value = 4242
    out.put(v.value)


def hold_lock_and_die(lock):
    lock.acquire()
    os._exit(0)


def hold_value_lock_and_die(v):
    v.get_lock().acquire()
    v.value = 99  # committed: inside our own section
    os._exit(0)


def hold_lock(lock, started, seconds):
    with lock:
        started.set()
        time.sleep(seconds)


def set_later(v, new, delay):
    time.sleep(delay)
    v.value = new


def named_child(segname, n):
    with shval.Segment(segname) as seg:
        v = seg['counter']
        for _ in range(n):
            v.add(1)
        seg.value('from_child', 'q', 7)


def make_and_send(q, ack):
    v = shval.Value('i', 77)
    a = shval.Array('d', [1.5, 2.5])
    q.put((v, a))
    ack.get(timeout=30)   # stay alive until the parent has attached
    v.value = 78          # the parent sees it: same memory
    a[0] = 9.0
    ack.get(timeout=30)
