"""Search results of every query kind on generated corpora, as a JSON record: the refactor of the query
side (issue #31) is checked against a record written before it (``tests/data/query_record.json``).

A test fixture, not part of the package: ``tests/test_query_record.py`` compares; running this file
(``python tests/query_record.py``) rewrites the record.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

RECORD = Path(__file__).parent / "data" / "query_record.json"


def _table(df) -> dict:
    """Every column, as exact Python scalars (floats round-trip through JSON bit for bit)."""
    out = {c: [v.tolist() if isinstance(v, np.ndarray) else v for v in df[c].tolist()] for c in df.columns}
    if "uri" in out:  # file names, not where the corpus was generated: the record holds on any machine
        out["uri"] = [Path(v).name for v in out["uri"]]
    return json.loads(json.dumps(out, default=str))


def build(root: Path) -> dict:
    """The libraries: the default synthetic corpus (features45, bands8, musicnn-mtt, tiny CLAP, descriptors,
    fingerprints) and a melodic one (melody)."""
    from random_models import save_model

    from audiorag import Library
    from audiorag.datasets.melodic import MelodicDataset
    from audiorag.datasets.synthetic import SyntheticDataset
    from audiorag.embedders import Embedder, get_embedder, register
    from audiorag.library.derived import fuse

    @register("bands8")
    class Bands8(Embedder):
        name, sample_rate, dim = "bands8", 8000, 8

        def embed(self, batch):
            power = np.abs(np.fft.rfft(self.check_batch(batch), axis=1)) ** 2
            return np.log1p(np.stack([b.sum(axis=1) for b in np.array_split(power, 8, axis=1)], axis=1))

    ds = SyntheticDataset(24, seed=7)
    ds.generate()
    clap = save_model("clap", root / "clap")
    lib = Library.create(root / "lib", window=10, hop=2)
    lib.add(ds.sources()[:12], embedders=["features45", "bands8", "musicnn-mtt", get_embedder("clap", model=str(clap))],
            fingerprint=True, workers=1, progress=False)
    for e in lib.embeddings():
        lib.build_index(e.key, "Flat")
    fuse(lib, ["features45", "bands8"], weights=[3, 1])
    mel = MelodicDataset(6, seed=3, duration=20.0)
    mel.generate()
    hum_lib = Library.create(root / "hum", window=10, hop=2)
    hum_lib.add(mel, embedders=["melody"], workers=1, progress=False)
    hum_lib.build_index("melody")
    return {"lib": lib, "hum": hum_lib, "clap": next(e.key for e in lib.embeddings() if e.name == "clap")}


def record(libs: dict) -> dict:
    """Query name → result table (or description) for every query kind."""
    from audiorag.datasets.melodic import SR, melodies_of, synthesise_hum
    from audiorag.describe import describe
    from audiorag.identify import identify
    from audiorag.recommend import recommend
    from audiorag.rerank import Rerank
    from audiorag.search import Query, search

    lib, hum_lib = libs["lib"], libs["hum"]
    uri = lib.tracks.set_index("track_id").at[5, "uri"]
    y, sr = sf.read(uri, dtype="float32")
    clip = y[int(4.3 * sr):int(12.1 * sr)]
    out = {
        "moment": search(lib, Query.moment(3, at=12.5), embedder="features45", k=10),
        "moment_excl_filter_track": search(lib, Query.moment(3, at=12.5), embedder="features45", k=5,
                                           exclude_same_track=True, filters={"genre": ["ambient", "techno", "rock"]},
                                           by="track"),
        "clip_file": search(lib, Query.audio(uri, start=4.0, end=12.0), embedder="features45", k=10),
        "clip_long_sequence": search(lib, Query.audio(uri, start=0.0, end=24.0), embedder="features45", k=6),
        "clip_array": search(lib, Query.audio(clip, sr=sr), embedder="features45", k=10, by="track"),
        "clip_descriptor_filter": search(lib, Query.audio(uri, start=4.0, end=12.0), embedder="features45", k=5,
                                         filters={"tempo": {"op": ">", "value": 0}}),
        "rerank_moment": search(lib, Query.moment(3, at=12.5), embedder="features45", k=8,
                                rerank=Rerank(diversity=0.3, harmonic=0.2, tempo=0.2, key=0.2)),
        "rerank_clip": search(lib, Query.audio(clip, sr=sr), embedder="features45", k=8,
                              rerank=Rerank(diversity=0.3, tempo=0.2, key=0.2, mood="calm", mood_weight=0.3)),
        "text_tags": search(lib, Query.text("fast techno beat"), embedder="musicnn-mtt", k=6),
        "text_tags_track": search(lib, Query.text("slow ambient piano"), embedder="musicnn-mtt", k=4, by="track"),
        "text_tower": search(lib, Query.text("slow piano"), embedder=libs["clap"], k=6),
        "hybrid": search(lib, Query.hybrid("slow piano", Query.audio(uri, start=4.0, end=12.0), alpha=0.5),
                         embedder=libs["clap"], k=6),
        "hybrid_rerank": search(lib, Query.hybrid("slow piano", Query.audio(clip, sr=sr), alpha=0.3),
                                embedder=libs["clap"], k=6, rerank=Rerank(diversity=0.3, tempo=0.2)),
        "late_fusion": search(lib, Query.moment(1, at=2.0), embedder="features45+bands8", k=8, fusion="late",
                              weights=[9, 1]),
        "late_fusion_clip": search(lib, Query.audio(uri, start=4.0, end=12.0), embedder="features45+bands8", k=5,
                                   fusion="late", by="track"),
        "identify": identify(lib, clip, sr=sr, k=3),
        "recommend": recommend(lib, ["3@12", "7@4"], history=[5], k=8, embedder="features45", mood="calm"),
    }
    hum, _ = synthesise_hum(melodies_of(hum_lib.tracks.set_index("track_id").at[2, "uri"]),
                            np.random.default_rng(7), phrase=(10, 21), transpose=5, tempo=0.8, snr_db=25, edit=None)
    out["hum"] = search(hum_lib, Query.hum(hum, sr=SR), k=5)
    out["hum_track"] = search(hum_lib, Query.hum(hum, sr=SR), k=3, by="track")
    tables = {name: _table(df) for name, df in out.items()}
    d = describe(lib, Query.moment(3, at=12.5), embedder="features45", k=5).to_dict()
    # the tiny CLAP's embedding key hashes its temporary folder: named by its role, so the record is stable
    tables["describe_moment"] = json.loads(json.dumps(d, default=str).replace(libs["clap"], "clap"))
    return tables


if __name__ == "__main__":
    import tempfile
    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as tmp:
        RECORD.write_text(json.dumps(record(build(Path(tmp))), indent=0, sort_keys=True) + "\n")
    print(RECORD)
