import numpy as np
import pytest

from audiorag.errors import ParameterError
from audiorag.segment import Segmentation, cut, segment_table


def test_full_windows_and_exact_timestamps():
    s, e = Segmentation(10, 2, "drop").windows(30.0)
    assert s.tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    np.testing.assert_array_equal(e - s, 10.0)
    s, e = Segmentation(5, 2.5).windows(30.0)  # S4: 5 s with 50 % overlap
    assert len(s) == 11 and s[-1] == 25.0 and e[-1] == 30.0
    s, _ = Segmentation(0.3, 0.1, "drop").windows(1.0)
    assert s[7] == 0.7000000000000001 or s[7] == pytest.approx(0.7, abs=1e-12)


@pytest.mark.parametrize("tail,last", [("drop", (20.0, 30.0)), ("pad", (22.0, 32.0)), ("keep-short", (22.0, 31.0))])
def test_tail_policies(tail, last):
    s, e = Segmentation(10, 2, tail).windows(31.0)
    assert (s[-1], e[-1]) == last


@pytest.mark.parametrize("tail,end", [("drop", 4.0), ("pad", 10.0), ("keep-short", 4.0)])
def test_short_track_gets_one_segment(tail, end):
    s, e = Segmentation(10, 2, tail).windows(4.0)
    assert s.tolist() == [0.0] and e.tolist() == [end]


def test_invalid_parameters():
    for args in [(0, 1), (10, 0), (5, 6), (10, 2, "wrap")]:
        with pytest.raises(ParameterError):
            Segmentation(*args)
    with pytest.raises(ParameterError):
        Segmentation().windows(0)


def test_table_and_cut():
    df = segment_table([3, 9], [12.0, 10.0], Segmentation(10, 2), first_segment_id=5)
    assert df["segment_id"].tolist() == [5, 6, 7]
    assert df["track_id"].tolist() == [3, 3, 9]
    assert df["end"].tolist() == [10.0, 12.0, 10.0]
    w = cut(np.arange(10, dtype=np.float32), 2, [0.0, 4.0], [2.0, 6.0])
    assert w[0].tolist() == [0, 1, 2, 3] and w[1].tolist() == [8, 9, 0, 0]
