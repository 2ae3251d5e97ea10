"""The listening page of ``audiorag serve``: static files in this package (no build step, nothing fetched
from the internet: plotly's own bundled ``plotly.min.js`` is served from the installed plotly package) and
the routes the page needs beyond the REST API: ``GET /map`` (a 2-D map of the library's moments) and
``GET /favicon.ico``.

>>> import tempfile
>>> from fastapi.testclient import TestClient
>>> from audiorag import Library
>>> from audiorag.serve.app import create_app
>>> from audiorag.serve.settings import Settings
>>> client = TestClient(create_app(Settings(str(Library.create(tempfile.mkdtemp(), window=2, hop=1).path))))
>>> page = client.get("/")
>>> page.status_code, "<title>audiorag</title>" in page.text, client.get("/static/plotly.min.js").status_code
(200, True, 200)
>>> client.get("/favicon.ico").headers["content-type"]
'image/vnd.microsoft.icon'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from ..search.filters import public_columns
from ..serve.tracks import Lib, audio_url, plain

STATIC = Path(str(resources.files(__package__) / "static"))
#: the most points a map sends (a seeded sample beyond): plotly's WebGL scatter stays fluid up to here
MAX_POINTS = 20_000
router = APIRouter(tags=["page"])
_MAPS: dict = {}


def mount(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files under ``/static`` on ``app`` (after the API's routes)."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    """The icon browsers ask for at the root (the page itself links ``static/favicon.svg``)."""
    return FileResponse(STATIC / "favicon.ico", media_type="image/vnd.microsoft.icon",
                        headers={"Cache-Control": "max-age=86400"})


@router.get("/static/plotly.min.js", include_in_schema=False)
async def plotly_js() -> FileResponse:
    import plotly
    return FileResponse(Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
                        media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})


@router.get("/map")
def library_map(lib: Lib, embedder: Annotated[str | None, Query(max_length=200)] = None,
                method: Annotated[str, Query(pattern="^(pca|tsne|umap)$")] = "pca",
                colour: Annotated[str | None, Query(max_length=200, description="a track column")] = None,
                outliers: Annotated[float, Query(ge=0, lt=0.5, description="share ringed as outliers")] = 0.05):
    """Every live moment of one embedding on a 2-D map (at most ``MAX_POINTS``, a seeded sample beyond),
    coloured by a track column, the strongest ``outliers`` share flagged (isolation forest), each with the
    URL of its audio. Columns of equal length under ``points``."""
    from ..analysis import anomalies, explore, maps
    emb = lib.embedding(embedder)
    key = (str(lib.data), emb.key, method, colour, outliers)
    if key not in _MAPS:
        items, vectors = explore.map_items(lib, emb.key)
        if colour is not None and colour not in public_columns(lib.tracks):  # never a file's path or hash
            raise HTTPException(422, f"colour: no track column {colour!r}")
        if len(items) > MAX_POINTS:
            rows = np.sort(np.random.default_rng(0).choice(len(items), MAX_POINTS, replace=False))
            items, vectors = items.iloc[rows], vectors[rows]
        if len(items) < 3:
            raise HTTPException(409, f"the map needs at least 3 moments; {emb.key} has {len(items)}")
        xy = maps.project(vectors, method, seed=0)
        flagged = (anomalies.flagged(anomalies.isolation_forest(vectors, seed=0), outliers) if outliers
                   else np.zeros(len(items), bool))
        labels = items[colour].astype(str).tolist() if colour else ["moments"] * len(items)
        points = {"x": np.round(xy[:, 0], 5).tolist(), "y": np.round(xy[:, 1], 5).tolist(),
                  "track_id": items["track_id"].astype(int).tolist(),
                  "segment_id": items["segment_id"].astype(int).tolist(),
                  "start": [plain(v) for v in items["start"]], "end": [plain(v) for v in items["end"]],
                  "label": labels, "outlier": [bool(v) for v in flagged],
                  "audio": [audio_url(int(t), float(s), float(e)) for t, s, e in
                            zip(items["track_id"], items["start"], items["end"])]}
        if len(_MAPS) > 8:
            _MAPS.clear()
        _MAPS[key] = {"embedding": emb.key, "method": method, "colour": colour, "n": len(items), "points": points}
    return _MAPS[key]
