"""Search, hum, re-ranking, late fusion, identify, recommend and describe answer as the record written before the
query side was reorganised (issue #31; ``tests/query_record.py`` rewrites it).

On the machine that wrote it the answers were bit-identical; elsewhere (another BLAS build, other thread counts) a
float32 sum may round differently in its last bits, so here every id, rank, name and order must be equal and every
score within 1e-5 (relative) of the record: anything the reorganisation could change shows far above that."""

import json
import math

import pytest
from query_record import RECORD, build, record


def differences(got, want, where: str = "") -> list[str]:
    """Where ``got`` differs from ``want``: structure and non-float values exactly, floats to 1e-5.

    >>> differences({"a": [1, 0.5, "x"]}, {"a": [1, 0.5000001, "x"]}), differences([1.0], [1.1])
    ([], ['[0]: 1.0 != 1.1'])
    """
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return [] if math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6) else [f"{where}: {got!r} != {want!r}"]
    if type(got) is not type(want):
        return [f"{where}: {got!r} != {want!r}"]
    if isinstance(want, dict):
        if sorted(got) != sorted(want):
            return [f"{where}: keys {sorted(got)} != {sorted(want)}"]
        return [d for k in want for d in differences(got[k], want[k], f"{where}.{k}")]
    if isinstance(want, list):
        if len(got) != len(want):
            return [f"{where}: {len(got)} items != {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in differences(g, w, f"{where}[{i}]")]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


@pytest.mark.slow
def test_every_query_kind_answers_as_recorded(tmp_path):
    want = json.loads(RECORD.read_text())
    got = json.loads(json.dumps(record(build(tmp_path))))  # as the record stores it
    assert sorted(got) == sorted(want)
    for name in want:
        assert differences(got[name], want[name], name) == [], name
