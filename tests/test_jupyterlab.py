"""The explorer notebooks opened in JupyterLab in a real browser (headless Chromium), all cells run there.

What papermill cannot see: that the widgets render, the hits' players load their moments, the plotly map
(a FigureWidget, drawn by anywidget) shows every segment, and a click on a point plays that moment.
Screenshots go to the test's folder, or to ``$AUDIORAG_SCREENSHOTS`` when set (docs/img is made that way).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest
from browser import chromium, jupyter_lab, require_browser

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
pytestmark = pytest.mark.slow

# plotly keeps the drawn data on its graph div: the pixel position of point i of trace t, in page coordinates
POINT_XY = """([t, i]) => {
  const gd = document.querySelector('.js-plotly-plot'), fl = gd._fullLayout, tr = gd._fullData[t];
  const box = gd.getBoundingClientRect();
  return [box.left + fl._size.l + fl.xaxis.l2p(tr.x[i]), box.top + fl._size.t + fl.yaxis.l2p(tr.y[i])];
}"""
TRACES = """() => document.querySelector('.js-plotly-plot')._fullData.map(
  t => ({type: t.type, name: t.name, n: t.x.length, text: t.text ? Array.from(t.text) : null}))"""
# the status bar says "Python 3 (ipykernel) | Idle" once the page is connected to its started kernel
KERNEL_READY = """() => Array.from(document.querySelectorAll('.jp-StatusBar-TextItem'))
  .some(e => /^Python.*\\| Idle$/.test(e.textContent.trim()))"""
AUDIO = """(scope) => Array.from(document.querySelectorAll(scope + ' audio')).map(
  a => ({duration: a.duration, paused: a.paused, time: a.currentTime, ready: a.readyState}))"""


def _screenshots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("AUDIORAG_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _run_all(page, url: str, token: str, root: Path, name: str) -> None:
    """Open notebook ``name`` in JupyterLab, run all its cells from the Run menu and wait until they are done."""
    page.goto(f"{url}/lab/tree/{name}?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.wait_for_function(KERNEL_READY, timeout=120_000)  # before that, Run All Cells does nothing
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    code_cells = sum(c["cell_type"] == "code" for c in json.loads((root / name).read_text())["cells"])
    page.wait_for_function(f"() => Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))"
                           f".filter(e => /\\[\\d+\\]/.test(e.textContent)).length === {code_cells}", timeout=300_000)
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.querySelector('.lm-TabBar-tab.jp-mod-dirty')", timeout=60_000)
    # number the cells so a test can say "the output of cell 4": [data-cell="4"] .jp-OutputArea
    page.evaluate("() => document.querySelectorAll('.jp-Notebook .jp-Cell').forEach((c, i) => c.dataset.cell = i)")


def _errors(notebook: Path) -> list[str]:
    """Error outputs of the notebook JupyterLab saved."""
    for _ in range(100):  # the server may still be writing the saved file
        try:
            cells = json.loads(notebook.read_text())["cells"]
            break
        except json.JSONDecodeError:
            time.sleep(0.1)
    return [f"{o['ename']}: {o['evalue']}" for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]


def _wait_audio(page, scope: str, n: int) -> list[dict]:
    page.wait_for_function(f"() => Array.from(document.querySelectorAll({scope!r} + ' audio'))"
                           f".filter(a => a.readyState >= 1).length >= {n}", timeout=60_000)
    return page.evaluate(AUDIO, scope)


def _click_point(page, trace: int, i: int) -> None:
    x, y = page.evaluate(POINT_XY, [trace, i])
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)


def _played(page, scope: str) -> dict:
    """The audio element the click put in ``scope``, once it is playing."""
    page.wait_for_function(f"() => Array.from(document.querySelectorAll({scope!r} + ' audio'))"
                           ".some(a => !a.paused && a.currentTime > 0)", timeout=60_000)
    return next(a for a in page.evaluate(AUDIO, scope) if not a["paused"])


def test_explore_notebook_in_jupyterlab(library, tmp_path):
    browser_path = require_browser()
    root, shots = tmp_path / "lab", _screenshots(tmp_path)
    root.mkdir()
    pm.execute_notebook(str(NOTEBOOKS / "02_explore_search.ipynb"), str(root / "02.ipynb"), prepare_only=True,
                        parameters={"library": str(library.path), "query_track": 3, "query_at": 4.0, "k": 5,
                                    "out_dir": str(tmp_path / "out")})
    n_segments, n_tracks = len(library.segments), len(library.tracks)
    with jupyter_lab(root, tmp_path / "jupyter") as (url, token), chromium(browser_path) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        _run_all(page, url, token, root, "02.ipynb")
        assert _errors(root / "02.ipynb") == []

        # the hits: five players, each holding its 10 s moment
        # cells: 0 title, 1 parameters, 2 papermill's injected parameters, 3 setup, 4 hits, 5 map, 7 widgets
        hits_out = "[data-cell='4'] .jp-Cell-outputArea"
        players = _wait_audio(page, hits_out, 5)
        assert len(players) == 5 and all(abs(a["duration"] - 10.0) < 0.05 for a in players)
        page.locator(hits_out).scroll_into_view_if_needed()   # Run All ends at the last cell: bring it on screen
        page.wait_for_function(f"() => document.querySelector({hits_out!r}).innerText.includes('rank: 1')",
                               timeout=30_000)                # (cells off screen are not rendered: no innerText)
        assert "rank: 1 · track_id: 3 · start: 4.0" in page.locator(hits_out).inner_text()

        # the map: one WebGL point per live segment, the five hits ringed, the query as a star
        traces = page.evaluate(TRACES)
        assert sum(t["n"] for t in traces if t["type"] == "scattergl") == n_segments
        assert {t["name"]: t["n"] for t in traces if t["type"] == "scatter"} == {"hits": 5, "query": 1}
        page.locator(".js-plotly-plot").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "jupyterlab-explore-map.png"))

        # a click on a point plays that point's moment
        first = next(i for i, t in enumerate(traces) if t["type"] == "scattergl")
        want = re.match(r"track (\d+) (\d+\.\d)–(\d+\.\d)s", traces[first]["text"][2]).groups()
        map_out = "[data-cell='5'] .jp-Cell-outputArea"
        _click_point(page, first, 2)
        page.wait_for_function(f"() => document.querySelector({map_out!r}).innerText.includes('track {want[0]},')",
                               timeout=60_000)
        said = re.search(r"track (\d+), (\d+\.\d)–(\d+\.\d) s", page.locator(map_out).inner_text()).groups()
        assert said == want
        playing = _played(page, map_out)
        assert abs(playing["duration"] - (float(want[2]) - float(want[1]))) < 0.05

        # the widgets: one option per track; searching track 5 at the slider's 4 s lists that moment first
        select = page.locator(".widget-dropdown select")
        assert select.locator("option").count() == n_tracks
        select.select_option(index=list(library.tracks["track_id"]).index(5))
        page.locator("button.jupyter-button", has_text="Search").click()
        widget_out = "[data-cell='7'] .jp-Cell-outputArea .widget-output"
        page.wait_for_function(f"() => document.querySelector({widget_out!r})?.innerText.includes('rank: 1')",
                               timeout=60_000)
        assert "rank: 1 · track_id: 5 · start: 4.0" in page.locator(widget_out).inner_text()
        assert len(_wait_audio(page, widget_out, 5)) == 5
        page.locator(widget_out).scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "jupyterlab-explore-widgets.png"))


def test_clusters_notebook_in_jupyterlab(library, tmp_path):
    browser_path = require_browser()
    root, shots = tmp_path / "lab", _screenshots(tmp_path)
    root.mkdir()
    pm.execute_notebook(str(NOTEBOOKS / "04_clusters_anomalies.ipynb"), str(root / "04.ipynb"), prepare_only=True,
                        parameters={"library": str(library.path), "clusters": ["kmeans:8"], "k_min": 2, "k_max": 4,
                                    "inject_rounds": 1, "maps": ["pca"], "out_dir": str(tmp_path / "out")})
    with jupyter_lab(root, tmp_path / "jupyter") as (url, token), chromium(browser_path) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        _run_all(page, url, token, root, "04.ipynb")
        assert _errors(root / "04.ipynb") == []
        figures = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
        # every figure the analysis wrote is shown, and has loaded (non-zero natural size)
        sizes = page.evaluate("() => Array.from(document.querySelectorAll('.jp-OutputArea img'))"
                              ".map(i => i.naturalWidth * i.naturalHeight)")
        assert len(sizes) == len(figures) and min(sizes) > 0
        outliers = int(pd.read_csv(tmp_path / "out" / "outliers.csv")["outlier"].sum())
        traces = page.evaluate(TRACES)
        assert sum(t["n"] for t in traces if t["type"] == "scattergl") == len(library.segments)
        assert {t["name"]: t["n"] for t in traces if t["type"] == "scatter"} == {"outliers": outliers}
        ringed = next(i for i, t in enumerate(traces) if t["name"] == "outliers")
        listen = f"[data-cell='{page.locator('.jp-Notebook .jp-Cell').count() - 1}'] .jp-Cell-outputArea"
        assert len(_wait_audio(page, listen, 5)) == 5
        page.locator(".js-plotly-plot").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "jupyterlab-outliers-map.png"))
        _click_point(page, ringed, 0)
        playing = _played(page, listen + " .widget-output")
        assert abs(playing["duration"] - 10.0) < 0.05
