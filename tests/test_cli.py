import json

import numpy as np
import pandas as pd
import soundfile as sf
from conftest import SR
from typer.testing import CliRunner

from audiorag.cli import app

runner = CliRunner()


def _folder(tmp_path, rng):
    audio = tmp_path / "audio"
    (audio / "sub").mkdir(parents=True)
    rows = []
    for i in range(6):
        t = np.arange(int(8 * SR)) / SR
        tone = 0.3 * np.sin(2 * np.pi * (150 + 400 * (i % 2)) * t)
        y = (tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
        name = f"sub/s{i}.wav" if i % 2 else f"s{i}.wav"
        sf.write(audio / name, y, SR)
        rows.append({"path": name, "label": "high" if i % 2 else "low", "artist": f"a{i // 2}"})
    (audio / "broken.wav").write_text("nope")
    pd.DataFrame(rows).to_csv(audio / "labels.csv", index=False)
    return audio


def test_build_info_search_json(tmp_path, rng):
    audio = _folder(tmp_path, rng)
    lib = tmp_path / "lib"
    r = runner.invoke(app, ["build", str(lib), "--dataset", f"folder:{audio}", "--labels", str(audio / "labels.csv"),
                            "--window", "4", "--hop", "2", "--index", "Flat", "--index", "HNSW32", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert (report["added"], report["failed"]) == (6, 1)
    assert report["errors"][0]["uri"].endswith("broken.wav")
    assert [i["name"] for i in report["indexes"]] == ["flat", "hnsw32"]

    info = json.loads(runner.invoke(app, ["info", str(lib), "--json"]).stdout)
    assert info["tracks"] == 6 and info["segments"] == 6 * 3 and info["errors"] == 1
    assert info["embeddings"][0]["name"] == "features45"

    r = runner.invoke(app, ["search", str(lib), "--track", "0", "--at", "2", "-k", "4", "--exclude-same-track",
                            "--by", "track", "--json"])
    hits = json.loads(r.stdout)
    assert len(hits) == 4 and all(h["track_id"] != 0 for h in hits)
    assert hits[0]["label"] == "low"  # track 0 is a low tone: its nearest other track is low too

    r = runner.invoke(app, ["search", str(lib), "--audio", str(audio / "sub" / "s1.wav"), "--start", "1", "--end", "5",
                            "--where", "label=high", "--index", "hnsw32", "--json"])
    hits = json.loads(r.stdout)
    assert hits[0]["uri"].endswith("s1.wav") and abs(hits[0]["start"] - 1) <= 2
    assert {h["label"] for h in hits} == {"high"}

    again = json.loads(runner.invoke(app, ["build", str(lib), "--dataset", f"folder:{audio}", "--window", "4",
                                           "--hop", "2", "--json"]).stdout)
    assert (again["added"], again["duplicates"]) == (0, 6)


def test_a_second_embedding_leaves_commands_on_the_default_until_default_changes_it(tmp_path, rng):
    audio = _folder(tmp_path, rng)
    lib = tmp_path / "lib"
    build = ["build", str(lib), "--dataset", f"folder:{audio}", "--labels", str(audio / "labels.csv"),
             "--window", "4", "--hop", "2", "--json"]
    assert runner.invoke(app, build).exit_code == 0
    first = json.loads(runner.invoke(app, ["default", str(lib), "--json"]).stdout)["default_embedding"]
    assert runner.invoke(app, [*build, "--embedder", "features45:n_mels=64"]).exit_code == 0
    info = runner.invoke(app, ["info", str(lib)]).stdout
    assert f"embedding {first} (default" in info and info.count("embedding features45-") == 2
    search = ["search", str(lib), "--track", "0", "--at", "2", "-k", "3", "--json"]
    r = runner.invoke(app, search)
    assert r.exit_code == 0, r.output
    other = next(e["key"] for e in json.loads(runner.invoke(app, ["info", str(lib), "--json"]).stdout)["embeddings"]
                 if e["key"] != first)
    assert runner.invoke(app, ["default", str(lib), other]).exit_code == 0
    assert f"embedding {other} (default" in runner.invoke(app, ["info", str(lib)]).stdout
    assert runner.invoke(app, search).exit_code == 0
    r = runner.invoke(app, ["default", str(lib), "nope"])
    assert r.exit_code == 2 and "no embedding 'nope'" in r.output


def test_auto_index_budget_remove_and_memory_report(tmp_path, rng):
    audio = _folder(tmp_path, rng)
    lib = tmp_path / "lib"
    r = runner.invoke(app, ["build", str(lib), "--dataset", f"folder:{audio}", "--window", "4", "--hop", "2",
                            "--index", "auto", "--max-memory", "1KB", "--target-recall", "0.5", "--json"])
    assert r.exit_code == 0, r.output
    auto = json.loads(r.stdout)["indexes"][0]
    assert auto["name"] == "auto" and auto["factory"] == "SQ8"  # 18 segments × 53 B fit 1 kB; 18 × 98 B do not
    info = json.loads(runner.invoke(app, ["info", str(lib), "--memory", "--json"]).stdout)
    entry = info["embeddings"][0]["indexes"][0]
    assert entry["quality"]["recall@10"] >= 0.5 and entry["mapped_bytes"] > 0 and info["resident_bytes"] > 0
    assert runner.invoke(app, ["remove", str(lib), "0", "3"]).exit_code == 0
    info = json.loads(runner.invoke(app, ["info", str(lib), "--json"]).stdout)
    assert (info["tracks"], info["segments"], info["removed_segments"]) == (4, 12, 6)
    assert info["embeddings"][0]["indexes"][0]["n"] == 12
    r = runner.invoke(app, ["search", str(lib), "--track", "1", "-k", "20", "--json"])
    assert {h["track_id"] for h in json.loads(r.stdout)} == {1, 2, 4, 5}
    r = runner.invoke(app, ["remove", str(lib), "0"])
    assert r.exit_code != 0 and "[0]" in r.output
    r = runner.invoke(app, ["build", str(lib), "--dataset", f"folder:{audio}", "--window", "4", "--hop", "2",
                            "--index", "auto", "--max-memory", "2x"])
    assert r.exit_code != 0 and "640MB" in r.output


def test_errors_are_clear(tmp_path):
    r = runner.invoke(app, ["info", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no audiorag library" in r.output
    r = runner.invoke(app, ["build", str(tmp_path / "lib"), "--dataset", "nosuch:thing"])
    assert r.exit_code == 2 and "unknown dataset" in r.output
    r = runner.invoke(app, ["search", str(tmp_path / "lib")])
    assert r.exit_code == 2 and "give --audio FILE or --track ID" in r.output


def test_duplicate_files_are_named_in_the_build_summary_info_and_errors(tmp_path):
    from audiorag import Library
    audio = tmp_path / "audio"
    (audio / "sub").mkdir(parents=True)
    t = np.arange(SR * 3) / SR
    sf.write(audio / "a.wav", (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), SR)
    sf.write(audio / "b.wav", (0.3 * np.sin(2 * np.pi * 500 * t)).astype(np.float32), SR)
    (audio / "copy.wav").write_bytes((audio / "a.wav").read_bytes())
    (audio / "sub" / "again.wav").write_bytes((audio / "a.wav").read_bytes())
    lib = tmp_path / "lib"
    r = runner.invoke(app, ["build", str(lib), "--dataset", f"folder:{audio}", "--window", "1", "--hop", "1",
                            "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "2 duplicate files" in r.output and f"sub/again.wav: [duplicate] duplicate of {audio / 'a.wav'}" in r.output
    for _ in range(2):  # a second build finds them again, and records each once
        info = json.loads(runner.invoke(app, ["info", str(lib), "--json"]).stdout)
        assert info["tracks"] == 2 and info["errors"] == 0
        assert sorted((d["uri"], d["of"]) for d in info["duplicates"]) == [
            (str(audio / "copy.wav"), str(audio / "a.wav")), (str(audio / "sub" / "again.wav"), str(audio / "a.wav"))]
        errors = Library.open(lib).errors()
        assert sorted(errors["stage"]) == ["duplicate", "duplicate"]
        again = runner.invoke(app, ["build", str(lib), "--dataset", f"folder:{audio}", "--json"])
        assert json.loads(again.stdout)["duplicate_files"] == 2
    text = runner.invoke(app, ["info", str(lib)]).output
    assert "2 duplicate files not added" in text and f"copy.wav: duplicate of {audio / 'a.wav'}" in text


def test_tables_show_file_names_one_format_per_column_and_fit_100_columns(tmp_path, rng):
    audio = _folder(tmp_path, rng)
    deep = tmp_path / ("a-very-long-folder-name-" * 5) / ("and-another-one-" * 4)
    deep.parent.mkdir(parents=True)
    audio.rename(deep)
    lib = tmp_path / "lib"
    assert runner.invoke(app, ["build", str(lib), "--dataset", f"folder:{deep}", "--labels", str(deep / "labels.csv"),
                               "--window", "4", "--hop", "2", "--json"]).exit_code == 0
    r = runner.invoke(app, ["search", str(lib), "--track", "0", "--at", "2", "-k", "5"])
    lines = r.stdout.splitlines()
    assert r.exit_code == 0 and max(map(len, lines)) <= 100, r.stdout
    assert lines[0].split()[:7] == ["rank", "track", "start", "s", "end", "s", "cosine"], r.stdout
    assert str(tmp_path) not in r.stdout and "s0.wav" in r.stdout
    assert lines[-1].startswith("cosine: ") and all(len(row.split()[2].split(".")[1]) == 1 for row in lines[1:-1])
    r = runner.invoke(app, ["search", str(lib), "--track", "0", "--at", "2", "-k", "3", "--by", "track"])
    assert "moments" in r.stdout.splitlines()[0] and "moments: how many" in r.stdout
    assert json.loads(runner.invoke(app, ["search", str(lib), "--track", "0", "--at", "2", "--json"]).stdout)[0][
        "uri"].startswith(str(deep))  # the full path stays in --json

    r = runner.invoke(app, ["analyse", str(lib), "--label", "", "--clusters", "kmeans:2", "--ks", "",
                            "--anomalies", "0", "--maps", "pca", "--out", str(tmp_path / "an")])
    assert r.exit_code == 0, r.output
    table = r.stdout.splitlines()[:-1]  # the last line names the output folder
    assert "items 18" in table[0] and "18.0000" not in r.stdout and max(map(len, table)) <= 100, r.stdout
