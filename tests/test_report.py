"""The docs tables are generated from committed records and cannot drift; README and docs stay short and linked."""

import json
import re
import shutil
import unicodedata
from pathlib import Path

import pytest

from audiorag import report
from audiorag.evaluate import reported

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _copy_tree(tmp_path: Path) -> Path:
    """README, docs and the records, as a project root in tmp_path."""
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    shutil.copy(ROOT / "README.md", root / "README.md")
    for page in (ROOT / "docs").glob("*.md"):
        shutil.copy(page, root / "docs" / page.name)

    def records_only(folder, names):  # the small JSON records, not libraries or sweep outputs
        return [n for n in names
                if n in ("libraries", "cells") or (Path(folder, n).is_file() and not n.endswith(".json"))]

    shutil.copytree(ROOT / "experiments" / "results", root / "experiments" / "results", ignore=records_only)
    return root


def test_committed_docs_match_their_records():
    assert report.main(["--check", "--root", str(ROOT)]) == 0


def test_check_fails_when_a_record_changes(tmp_path, capsys):
    root = _copy_tree(tmp_path)
    assert report.main(["--check", "--root", str(root)]) == 0
    path = sorted((root / "experiments/results/index-bench").glob("index-n*.json"))[0]
    rec = json.loads(path.read_text())
    rec["results"][0]["recall@10"] = 0.123
    path.write_text(json.dumps(rec))
    assert report.main(["--check", "--root", str(root)]) == 1
    assert "docs/benchmarks.md" in capsys.readouterr().err
    # regenerating writes the new figure, after which the check passes again
    assert report.main(["--root", str(root)]) == 0
    assert "| 0.123 |" in (root / "docs/benchmarks.md").read_text()
    assert report.main(["--check", "--root", str(root)]) == 0


def test_check_flags_records_made_on_a_dirty_tree(tmp_path, capsys):
    root = _copy_tree(tmp_path)
    path = root / "experiments/results/index-bench/index-n100000.json"
    rec = json.loads(path.read_text())
    rec["git_commit"] = "0123abc-dirty"
    path.write_text(json.dumps(rec))
    report.main(["--check", "--root", str(root)])
    err = capsys.readouterr().err
    assert "made on a tree with uncommitted changes" in err and "index-bench/index-n100000.json" in err
    rec["git_commit"] = "0123abc"
    path.write_text(json.dumps(rec))
    assert "index-bench/index-n100000.json" not in report.dirty_records(root)


def test_render_replaces_only_between_markers(tmp_path):
    page = "intro\n<!-- report:seeds -->\nstale\n<!-- /report -->\noutro 0.5\n"
    out = report.render(page, tmp_path)
    assert out.startswith("intro\n<!-- report:seeds -->\n| seed |") and out.endswith("<!-- /report -->\noutro 0.5\n")
    assert "stale" not in out and "S4" in out
    with pytest.raises(SystemExit, match="unknown report section"):
        report.render("<!-- report:nope -->\n<!-- /report -->\n", tmp_path)


def test_every_section_is_used_and_missing_records_say_so(tmp_path):
    used = {m["name"] for p in report.pages(ROOT) for m in report.MARKER.finditer(p.read_text())}
    assert used == set(report.SECTIONS)
    for name, section in report.SECTIONS.items():
        if name not in ("seeds", "claims"):
            assert "No record yet" in section(tmp_path), name


def test_claims_cover_every_seed_and_fill_from_measurements():
    assert set(reported.SEEDS) == {"S0", "S1", "S2", "S3", "S4"}
    assert {c.seed for c in reported.CLAIMS} == set(reported.SEEDS)
    assert len(reported.CLAIMS) >= 40
    for c in reported.CLAIMS:  # a figure is compared, or says why not
        assert c.ours or c.note, c
    table = reported.claims_table({})
    measured = [c for c in reported.CLAIMS if c.ours]
    assert (table["audiorag"].str.startswith("no record")).sum() == len(measured)
    keys = {k for c in measured for k in c.keys()}
    table = reported.claims_table(dict.fromkeys(keys, 1.0) | {"load/embedder": "x"})
    assert not table["audiorag"].str.startswith("no record").any()


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in text.splitlines():
        if line.startswith("#"):
            title = re.sub(r"[`*]", "", line.lstrip("#").strip()).lower()
            out.add("".join(c for c in title if c in " -_" or unicodedata.category(c)[0] in "LNM").replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))])
def test_relative_links_resolve(page):
    text = (ROOT / page).read_text()
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (ROOT / page).parent / path if path else ROOT / page
        assert dest.exists(), f"{page}: link to missing {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest.read_text()), f"{page}: no heading for #{anchor} in {path or page}"
