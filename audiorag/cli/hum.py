"""Query by humming on the command line: ``audiorag eval LIB --protocol hum`` (searching with a hum is
``audiorag search LIB --hum FILE``, in :mod:`.query`).

>>> "hum" in EVAL_PROTOCOLS
True
"""

from __future__ import annotations

from pathlib import Path

from ..io import write_with
from . import options
from .experiment import EVAL_PROTOCOLS
from .tables import text_table


def _eval_hum(library: Path, checked: dict) -> None:
    """``--queries N`` hums (default 200) synthesised with ``--seed`` from the library's melodic tracks;
    prints MRR / top-1 / top-10 / moment@1, the transposition × tempo × noise table and latency."""
    from ..evaluate.hum import evaluate_hum, record, table
    from ..library.shards import open_library
    lib = open_library(library, ray_address=checked.get("ray_address"), missing="error")  # all shards or no figures
    n = checked.get("queries") or 200
    metrics, per = evaluate_hum(lib, n_hums=n, seed=checked["seed"], embedder=checked.get("embedder"),
                                index=checked.get("index"))
    rec = record(lib, metrics, seed=checked["seed"], embedder=checked.get("embedder"))
    out = checked.get("out")
    if out:
        rec.write(out)
        write_with(Path(out) / "per-hum.csv", lambda f: per.to_csv(f, index=False))
    head = " ".join(f"{k} {metrics[k]:.3f}" for k in ("MRR", "top1", "top10", "moment@1", "rejected"))
    lat = (f"latency p50 {metrics['latency/p50_ms']:.1f} ms, p99 {metrics['latency/p99_ms']:.1f} ms "
           f"(CPU time p50 {metrics['cpu/p50_ms']:.1f} ms, p99 {metrics['cpu/p99_ms']:.1f} ms)")
    cells = table(per)
    columns = {"by_transpose": ("transposed", None), "by_tempo": ("tempo", None), "by_noise": ("noise", None),
               "MRR": ("MRR", "{:.3f}"), "top10": ("top-10", "{:.3f}"), "n": ("hums", "{:d}")}
    text = f"{int(metrics['hums'])} hums: {head}\n{lat}\n{text_table(cells, columns)}"
    options.show(rec.model_dump(mode="json"), checked.get("as_json", False), text)


EVAL_PROTOCOLS["hum"] = _eval_hum
