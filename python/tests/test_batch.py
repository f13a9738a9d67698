"""Segment.batch(): shval_batch_* from Python (include/shval.h, "Batches")
on a local named segment and on a Redis segment (conftest.py's
anysegname: both kinds, as SHVAL_TEST_KINDS says): the same results on both kinds, exception
objects for ops that fail mid-batch while the others are applied, and
refusals that queue nothing."""
import pytest

import shval


@pytest.fixture
def anyseg(anysegname):
    with shval.Segment(anysegname, create=True) as seg:
        yield seg


def test_batch_results(anyseg):
    seg = anyseg
    a = seg.value('a', 'q', 0, lock=False)
    b = seg.value('b', 'B', 250)
    d = seg.value('d', 'd', 0.0)
    s = seg.value('s', '8s', b'hi')
    ok = b'\x02\x00\x00\x00ok' + b'\0' * 6
    res = seg.batch([('add', a, 5), ('add', a, 7), ('get', a),
                     ('add', b, 10),             # wraps as a local 'B'
                     ('set', d, 2.5), ('add', d, 0.25), ('get', d),
                     ('read', s), ('write', s, ok), ('read', s)])
    assert res == [5, 12, 12, 4, None, 2.75, 2.75,
                   b'\x02\x00\x00\x00hi' + b'\0' * 6, None, ok]
    assert (a.value, b.value, d.value, s.value) == (12, 4, 2.75, b'ok')
    assert seg.batch([]) == []


def test_batch_mid_failure(anyseg):
    seg = anyseg
    a = seg.value('a', 'q', 1)
    s = seg.value('s', '4s', b'')
    res = seg.batch([('add', a, 1),
                     ('write', s, b'\x09\x00\x00\x00abcd'),  # len 9 > 4
                     ('add', a, 1),
                     ('write', s, b'short'),                 # wrong size
                     ('get', a)])
    assert res[0] == 2 and res[2] == 3 and res[4] == 3
    assert isinstance(res[1], Exception)
    assert 'batch op 2 of 5' in str(res[1])
    assert isinstance(res[3], Exception) and 'batch op 4 of 5' in str(res[3])
    assert a.value == 3 and s.value == b''


def test_batch_refusals(anyseg, segname):
    seg = anyseg
    a = seg.value('a', 'q', 1)
    s = seg.value('s', '4s', b'')
    for ops, exc in [([('get', s)], TypeError),         # not a scalar
                     ([('add', a)], TypeError),         # no delta
                     ([('nope', a)], ValueError),
                     ([('add', 42, 1)], TypeError),
                     ([('add', a, 1), 'x'], TypeError),
                     ([('add', a, 1.5)], TypeError),
                     ([('set', a, 1 << 70)], ValueError)]:
        with pytest.raises(exc):
            seg.batch(ops)
        assert a.value == 1  # nothing applied when queueing fails
    try:
        with shval.Segment(segname + 'o', create=True) as other:
            o = other.value('o', 'q', 0)
            with pytest.raises(Exception) as e:
                seg.batch([('add', o, 1)])
            assert 'another segment' in str(e.value)
    finally:
        shval.unlink(segname + 'o')
