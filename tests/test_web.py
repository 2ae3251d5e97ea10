"""The listening page of ``audiorag serve`` in a real browser: headless Chromium (Playwright) against a real
server process on a free loopback port. Each scenario checks what a listener sees and hears against what
``audiorag.search.search`` returns for the same query.

Screenshots go to the test's folder, or to ``$AUDIORAG_SCREENSHOTS`` when set (docs/img is made that way).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from browser import chromium, free_port, require_browser, wait_for_port

from audiorag import Library
from audiorag.search import Query, search

pytestmark = pytest.mark.slow
SR = 22050
GENRES = ["drone", "drone", "pulse", "pulse", "noise", "chirp"]
PLAYING = """(sel) => { const a = document.querySelector(sel); return a && !a.paused && a.currentTime > 0; }"""


def _track(i: int, seconds: float = 12.0) -> np.ndarray:
    """Distinct generated tracks: tones, pulsed tones, noise and a chirp."""
    rng = np.random.default_rng(i)
    t = np.arange(int(seconds * SR)) / SR
    kind = GENRES[i]
    y = 0.3 * np.sin(2 * np.pi * 110 * (i + 1) * t)
    if kind == "pulse":
        y *= 1 + np.sign(np.sin(2 * np.pi * 2 * t))
    elif kind == "noise":
        y = 0.3 * rng.standard_normal(len(t))
    elif kind == "chirp":
        y = 0.3 * np.sin(2 * np.pi * (200 + 100 * t) * t)
    return (y + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def web_library(tmp_path_factory):
    """Six generated tracks with features45 (Flat), musicnn-mtt (a tagger: text search in its tag space) and a
    tiny random CLAP (a text tower: hybrid search), and a genre column."""
    from random_models import save_model

    from audiorag.embedders import get_embedder
    root = tmp_path_factory.mktemp("web")
    (root / "audio").mkdir()
    for i in range(len(GENRES)):
        sf.write(root / "audio" / f"t{i}.wav", _track(i), SR)
    clap = get_embedder("clap", model=str(save_model("clap", root / "clap")))
    lib = Library.create(root / "lib", window=4, hop=2)
    lib.add(str(root / "audio"), embedders=["features45", "musicnn-mtt", clap], workers=1, progress=False)
    for e in lib.embeddings():
        lib.build_index(e.key, "Flat")
    ids = lib.tracks.sort_values("uri")["track_id"].tolist()
    lib.set_track_column("genre", dict(zip(ids, GENRES)))
    return Library.open(root / "lib")


@pytest.fixture(scope="module")
def server(web_library, tmp_path_factory):
    """``audiorag serve`` on a free loopback port; yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "audiorag", "serve", str(web_library.path), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="module")
def browser(server):
    with chromium(require_browser()) as b:
        yield b


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    yield page
    context.close()


def _shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("AUDIORAG_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _key(lib: Library, name: str) -> str:
    return next(e.key for e in lib.embeddings() if e.name == name)


def _shown(page, n: int) -> list[tuple[int, float]]:
    """The hits the page lists (track, start), once there are ``n``."""
    page.wait_for_function(f"() => document.querySelectorAll('#hits li').length === {n}", timeout=60_000)
    return [(int(li.get_attribute("data-track")), float(li.get_attribute("data-start")))
            for li in page.locator("#hits li").all()]


def _expected(hits) -> list[tuple[int, float]]:
    return [(int(t), float(s)) for t, s in zip(hits["track_id"], hits["start"])]


def _by_file(lib: Library, name: str) -> int:
    return int(lib.tracks.loc[lib.tracks["uri"].str.endswith(name), "track_id"].iloc[0])


def test_upload_a_clip_then_play_hit_two_with_the_keyboard(page, web_library, tmp_path):
    clip = tmp_path / "clip.wav"
    sf.write(clip, _track(2)[2 * SR:8 * SR], SR)
    page.set_input_files("#file", str(clip))
    page.fill("#k", "5")
    page.select_option("#embedder", _key(web_library, "features45"))
    page.click("#search")
    shown = _shown(page, 5)
    assert shown == _expected(search(web_library, Query.audio(str(clip)), embedder="features45", k=5))
    assert shown[0][0] == _by_file(web_library, "t2.wav")
    requests = []
    page.on("request", lambda r: requests.append(r) if "/audio?" in r.url else None)
    second = page.locator("#hits li").nth(1)
    second.locator("button.play").focus()
    page.keyboard.press("Enter")  # keyboard only
    page.wait_for_function(PLAYING, arg="#hits li:nth-child(2) audio", timeout=30_000)
    track, start = shown[1]
    end = float(second.get_attribute("data-end"))
    assert any(f"/tracks/{track}/audio?start={start:g}&end={end:g}" in r.url and "range" in r.headers
               for r in requests), [(r.url, r.headers.get("range")) for r in requests]
    duration = page.eval_on_selector("#hits li:nth-child(2) audio", "a => a.duration")
    assert abs(duration - (end - start)) < 0.05
    page.screenshot(path=str(_shots(tmp_path) / "web-search.png"), full_page=True)


def test_text_search_in_a_taggers_tag_space(page, web_library):
    page.check("input[name=mode][value=text]")
    page.select_option("#embedder", _key(web_library, "musicnn-mtt"))
    page.fill("#k", "4")
    page.fill("#text", "drums")
    page.press("#text", "Enter")
    shown = _shown(page, 4)
    assert shown == _expected(search(web_library, Query.text("drums"), embedder="musicnn-mtt", k=4))
    assert page.locator("#hits li .meta", has_text="tags: drums").count() == 4


def test_the_alpha_slider_changes_the_hybrid_ranking(page, web_library):
    key, tid = _key(web_library, "clap"), _by_file(web_library, "t1.wav")
    page.check("input[name=mode][value=hybrid]")
    page.select_option("#embedder", key)
    page.select_option("#track", str(tid))
    page.fill("#text", "slow piano")
    page.fill("#k", "6")
    rankings = {}
    for alpha in ("0", "1"):
        page.eval_on_selector("#alpha", "(a, v) => { a.value = v; a.dispatchEvent(new Event('input')); }", alpha)
        assert page.inner_text("#alpha-value") == f"{float(alpha):.2f}"
        page.evaluate("() => document.getElementById('hits').replaceChildren()")
        page.click("#search")
        rankings[alpha] = _shown(page, 6)
        query = Query.hybrid("slow piano", Query.moment(tid, 0.0), alpha=float(alpha))
        assert rankings[alpha] == _expected(search(web_library, query, embedder=key, k=6))
    assert rankings["0"] != rankings["1"]


def test_a_label_filter_keeps_only_that_label(page, web_library):
    page.check("input[name=mode][value=moment]")
    page.select_option("#embedder", _key(web_library, "features45"))
    page.select_option("#filter-column", "genre")
    page.select_option("#filter-value", "pulse")
    page.fill("#k", "5")
    page.click("#search")
    shown = _shown(page, 5)
    tid = int(page.input_value("#track"))
    expected = search(web_library, Query.moment(tid, 0.0), embedder="features45", k=5, filters={"genre": "pulse"})
    assert shown == _expected(expected)
    assert page.locator("#hits li .meta", has_text="genre: pulse").count() == 5


def test_the_map_shows_every_moment_and_a_click_plays_it(page, web_library, tmp_path):
    page.click("#tab-map")
    page.select_option("#map-embedder", _key(web_library, "features45"))
    page.select_option("#map-colour", "genre")
    page.click("#view-map button[type=submit]")
    page.wait_for_function("() => document.getElementById('map').dataset.points", timeout=60_000)
    assert int(page.get_attribute("#map", "data-points")) == len(web_library.segments)
    x, y, text = page.evaluate("""() => {
      const gd = document.getElementById('map'), fl = gd._fullLayout, t = gd._fullData[0];
      const box = gd.getBoundingClientRect();
      return [box.left + fl._size.l + fl.xaxis.l2p(t.x[1]), box.top + fl._size.t + fl.yaxis.l2p(t.y[1]), t.text[1]];
    }""")
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    page.wait_for_function(PLAYING, arg="#map-player", timeout=30_000)
    track, moment = text.split(" ")[1], text.split(" ")[2]
    assert page.inner_text("#map-now") == f"playing track {track}, {moment} s"
    page.screenshot(path=str(_shots(tmp_path) / "web-map.png"), full_page=True)
    page.click("#tab-stats")
    assert page.locator("#stats td", has_text=_key(web_library, "musicnn-mtt")).count() == 1
    page.screenshot(path=str(_shots(tmp_path) / "web-stats.png"), full_page=True)


def test_a_30_mb_upload_shows_the_size_error(page, tmp_path):
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros(int(30e6 / 2), np.int16), 44100, subtype="PCM_16")
    page.set_input_files("#file", str(big))
    page.click("#search")
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert "413" in page.inner_text("#error") and "--max-upload" in page.inner_text("#error")
    assert page.locator("#hits li").count() == 0


def test_a_fake_microphone_records_and_searches(browser, server, web_library, tmp_path):
    voice = tmp_path / "mic.wav"
    sf.write(voice, np.tile(_track(5)[:4 * SR], 3), SR, subtype="PCM_16")
    flags = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
             f"--use-file-for-fake-audio-capture={voice}"]
    b = browser.browser_type.launch(executable_path=require_browser(), headless=True, args=["--no-sandbox", *flags])
    try:
        page = b.new_page()
        page.goto(server + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        page.check("input[name=mode][value=record]")
        page.select_option("#embedder", _key(web_library, "features45"))
        page.click("#record")
        page.wait_for_timeout(4500)
        page.click("#record")
        page.wait_for_function("() => document.getElementById('record-status').textContent.startsWith('recorded')",
                               timeout=30_000)
        seconds = float(page.inner_text("#record-status").split()[1])
        assert 3.5 < seconds < 6
        page.fill("#k", "3")
        page.click("#search")
        shown = _shown(page, 3)
    finally:
        b.close()
    assert shown[0][0] == _by_file(web_library, "t5.wav")
