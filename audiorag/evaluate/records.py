"""Evaluation records: every evaluation writes a validated ``metrics.json``.

The record's shape and the provenance helpers live in :mod:`audiorag.analysis.records`
(analysis runs write the same records); an :class:`EvaluationRecord` carries the full
evaluation :class:`~audiorag.evaluate.Protocol`.

>>> EvaluationRecord.model_fields["protocol"].annotation.__name__
'Protocol'
"""

from __future__ import annotations

from ..analysis.records import SCHEMA_VERSION, Machine, Record, git_commit, library_content_hash, machine, provenance  # noqa: F401
from .protocol import Protocol


class EvaluationRecord(Record):
    """One evaluation (or analysis) run; ``protocol`` is validated as a :class:`Protocol`."""

    protocol: Protocol


__all__ = ["EvaluationRecord", "Machine", "Record", "SCHEMA_VERSION", "git_commit", "library_content_hash",
           "machine", "provenance"]
