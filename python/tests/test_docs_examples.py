"""The multiprocessing documentation's shared-memory examples, unchanged
except for the import substitution (multiprocessing objects -> shval), run
under every start method."""
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import child_env

from conftest import START_METHODS

EXAMPLE_VALUE_ARRAY = '''
from multiprocessing import Process
from shval import Value, Array

def f(n, a):
    n.value = 3.1415927
    for i in range(len(a)):
        a[i] = -a[i]

if __name__ == '__main__':
    num = Value('d', 0.0)
    arr = Array('i', range(10))

    p = Process(target=f, args=(num, arr))
    p.start()
    p.join()

    print(num.value)
    print(arr[:])
'''
OUT_VALUE_ARRAY = '3.1415927\n[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]\n'

EXAMPLE_SHAREDCTYPES = '''
from multiprocessing import Process
from shval import Lock
from shval import Value, Array
from ctypes import Structure, c_double

class Point(Structure):
    _fields_ = [('x', c_double), ('y', c_double)]

def modify(n, x, s, A):
    n.value **= 2
    x.value **= 2
    s.value = s.value.upper()
    for a in A:
        a.x **= 2
        a.y **= 2

if __name__ == '__main__':
    lock = Lock()

    n = Value('i', 7)
    x = Value(c_double, 1.0/3.0, lock=False)
    s = Array('c', b'hello world', lock=lock)
    A = Array(Point, [(1.875,-6.25), (-5.75,2.0), (2.375,9.5)], lock=lock)

    p = Process(target=modify, args=(n, x, s, A))
    p.start()
    p.join()

    print(n.value)
    print(x.value)
    print(s.value)
    print([(a.x, a.y) for a in A])
'''
OUT_SHAREDCTYPES = ("49\n0.1111111111111111\nb'HELLO WORLD'\n"
                    "[(3.515625, 39.0625), (33.0625, 4.0), (5.640625, 90.25)]\n")

EXAMPLE_LOCK = '''
from multiprocessing import Process
from shval import Lock

def f(l, i):
    l.acquire()
    try:
        print('hello world', i)
    finally:
        l.release()

if __name__ == '__main__':
    lock = Lock()

    for num in range(10):
        Process(target=f, args=(lock, num)).start()
'''

EXAMPLE_COUNTER = '''
from multiprocessing import Process
import shval as mp

def work(counter):
    for _ in range(500):
        with counter.get_lock():
            counter.value += 1

if __name__ == '__main__':
    counter = mp.Value('i', 0)
    ps = [Process(target=work, args=(counter,)) for _ in range(4)]
    for p in ps: p.start()
    for p in ps: p.join()
    print(counter.value)
'''


def _run(tmp_path, source, method):
    marker = "if __name__ == '__main__':\n"
    source = source.replace(marker, marker + '    import multiprocessing\n'
                            '    multiprocessing.set_start_method(%r)\n' % method, 1)
    script = tmp_path / 'example.py'
    script.write_text(textwrap.dedent(source))
    env = child_env()
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, env=env, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize('method', START_METHODS)
def test_value_array_example(tmp_path, method):
    assert _run(tmp_path, EXAMPLE_VALUE_ARRAY, method) == OUT_VALUE_ARRAY


@pytest.mark.parametrize('method', START_METHODS)
def test_sharedctypes_example(tmp_path, method):
    assert _run(tmp_path, EXAMPLE_SHAREDCTYPES, method) == OUT_SHAREDCTYPES


@pytest.mark.parametrize('method', START_METHODS)
def test_lock_example(tmp_path, method):
    out = _run(tmp_path, EXAMPLE_LOCK, method)
    assert sorted(out.splitlines()) == sorted('hello world %d' % i for i in range(10))


@pytest.mark.parametrize('method', START_METHODS)
def test_counter_example(tmp_path, method):
    assert _run(tmp_path, EXAMPLE_COUNTER, method) == '2000\n'


def _readme_examples():
    """The examples of python/README.md: ```python blocks starting with
    '# example: NAME'."""
    import re
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')
    with open(readme) as f:
        text = f.read()
    return re.findall(r'```python\n# example: (\S+)\n(.*?)```', text, re.S)


README_EXAMPLES = _readme_examples()


def test_readme_has_examples():
    assert {n for n, _ in README_EXAMPLES} >= {'lifetime', 'context', 'primitives', 'asyncio'}


@pytest.mark.parametrize('method', START_METHODS)
@pytest.mark.parametrize('name,source', README_EXAMPLES, ids=[n for n, _ in README_EXAMPLES])
def test_readme_example(tmp_path, method, name, source):
    _run(tmp_path, source, method)


def _top_readme_prefork():
    """The five-line pre-fork example of the top-level README.md and the
    output it shows."""
    import re
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), 'README.md')
    with open(readme) as f:
        text = f.read()
    m = re.search(r'A pre-fork server in five lines.*?```python\n(.*?)```\s*'
                  r'prints\s*```\n(.*?)```', text, re.S)
    assert m, 'README.md lost its five-line pre-fork example'
    return textwrap.dedent(m.group(1)), textwrap.dedent(m.group(2))


def test_top_readme_prefork_example(tmp_path):
    """Runs the README's pre-fork metrics example as printed (five lines),
    on a segment name of its own, and compares the output it shows."""
    source, want = _top_readme_prefork()
    assert len(source.strip().split('\n')) == 5
    assert "'/myapp'" in source
    seg = '/shval_readme_prefork_%d' % os.getpid()
    script = tmp_path / 'prefork.py'
    script.write_text(source.replace("'/myapp'", repr(seg)))
    try:
        res = subprocess.run([sys.executable, str(script)],
                             capture_output=True, text=True, timeout=120,
                             env=child_env(), cwd=str(tmp_path))
        assert res.returncode == 0, res.stderr
        assert res.stdout == want.strip('\n') + '\n'
    finally:
        import shval
        try:
            shval.Segment(seg, create=False).unlink()
        except Exception:  # noqa: BLE001
            if os.path.exists('/dev/shm' + seg):
                os.unlink('/dev/shm' + seg)
