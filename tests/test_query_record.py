"""Search, hum, re-ranking, late fusion, identify, recommend and describe give bit-identical results to the
record written before the query side was reorganised (issue #31; ``tests/query_record.py`` rewrites it)."""

import json

import pytest
from query_record import RECORD, build, record


@pytest.mark.slow
def test_every_query_kind_answers_exactly_as_recorded(tmp_path):
    want = json.loads(RECORD.read_text())
    got = record(build(tmp_path))
    assert sorted(got) == sorted(want)
    for name in want:
        assert json.dumps(got[name], sort_keys=True) == json.dumps(want[name], sort_keys=True), name
