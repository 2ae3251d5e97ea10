"""The listening page of ``audiorag serve`` in a real browser: headless Chromium (Playwright) against a real
server process on a free loopback port. Each scenario checks what a listener sees and hears against what
``audiorag.search.search`` returns for the same query.

Screenshots go to the test's folder, or to ``$AUDIORAG_SCREENSHOTS`` when set (docs/img is made that way); each
test prints where. The page is checked at a desktop (1280 px) and a phone (390 px) width.
"""

from __future__ import annotations

import json
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
PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1280, "height": 1000}
KEYS = [2, 7, 9, 0, 4, 11]  # pitch classes: D, G, A, C, E, B
BPM = [120.4, 98.0, 140.25, 87.6, 174.0, 60.0]
# the page waits this long for an answer to a moment query at 5 s (added in the browser: answers come in a known order)
SLOW_MOMENT = """() => {
  const fetchNow = window.fetch;
  window.fetch = async (url, options) => {
    const answer = await fetchNow(url, options);
    if (String(url).includes("at=5")) await new Promise((done) => setTimeout(done, 3000));
    return answer;
  };
}"""


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
    lib.set_track_column("key", dict(zip(ids, KEYS)))
    lib.set_track_column("bpm", dict(zip(ids, BPM)))
    sections = {t: json.dumps([[0.0, 5.0, "intro"], [5.0, 12.0, g]]) for t, g in zip(ids, GENRES)}
    lib.set_track_column("sections", sections)
    return Library.open(root / "lib")


@pytest.fixture(scope="module")
def server(web_library, tmp_path_factory):
    """``audiorag serve`` on a free loopback port; yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "audiorag", "serve", str(web_library.path), "--port", str(port),
                                 "--timeout", "180"],  # a first text query loads its model: slow on a busy machine
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


def _open(browser, server, viewport):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.failed = []  # the page's requests answered with an error status
    page.on("response", lambda r: page.failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    return context, page


@pytest.fixture
def page(browser, server):
    context, page = _open(browser, server, DESKTOP)
    yield page
    context.close()


@pytest.fixture(params=[DESKTOP, PHONE], ids=["1280px", "390px"])
def sized(browser, server, request):
    """The page at a desktop and at a phone width."""
    context, page = _open(browser, server, request.param)
    yield page
    context.close()


def _shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("AUDIORAG_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {out}")
    return out


def _overflow(page) -> int:
    """How far the page is wider than the window (0: nothing to scroll sideways)."""
    return page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


def _facts(item) -> dict[str, str]:
    """A hit's metadata as the page shows it: {label: text}."""
    return dict(zip(item.locator(".meta dt").all_inner_texts(), item.locator(".meta dd").all_inner_texts()))


def _idle(page) -> None:
    page.wait_for_function("() => document.getElementById('search-form').getAttribute('aria-busy') === 'false'",
                           timeout=60_000)


def _key(lib: Library, name: str) -> str:
    return next(e.key for e in lib.embeddings() if e.name == name)


def _shown(page, n: int) -> list[tuple[int, float]]:
    """The hits the page lists (track, start), once there are ``n``."""
    page.wait_for_function(f"""() => document.querySelectorAll('#hits li').length === {n} ||
                                     !document.getElementById('search-error').hidden""", timeout=60_000)
    assert page.locator("#search-error").is_hidden(), page.inner_text("#search-error")
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
    assert page.locator("#hits li .tags", has_text="tags: drums").count() == 4


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
    assert [_facts(li)["genre"] for li in page.locator("#hits li").all()] == ["pulse"] * 5


def _map_drawn(page, key: str) -> None:
    page.wait_for_function("""(key) => document.getElementById('map').dataset.embedding === key &&
                                      document.getElementById('map-form').getAttribute('aria-busy') === 'false'""",
                           arg=key, timeout=60_000)


def test_the_map_is_drawn_on_opening_its_tab_and_a_click_plays_a_moment(page, web_library, tmp_path):
    page.click("#tab-map")
    first = page.input_value("#map-embedder")
    _map_drawn(page, first)  # no button to press
    assert int(page.get_attribute("#map", "data-points")) == len(web_library.segments)
    assert page.input_value("#map-colour") == "genre"
    page.select_option("#map-embedder", _key(web_library, "features45"))
    _map_drawn(page, _key(web_library, "features45"))
    x, y, text = page.evaluate("""() => {
      const gd = document.getElementById('map'), fl = gd._fullLayout, t = gd._fullData[0];
      const box = gd.getBoundingClientRect();
      return [box.left + fl._size.l + fl.xaxis.l2p(t.x[1]), box.top + fl._size.t + fl.yaxis.l2p(t.y[1]), t.text[1]];
    }""")
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    page.wait_for_function(PLAYING, arg="#map-player", timeout=30_000)
    track, moment = text.split(" ")[1], text.split(" ")[2]
    assert page.inner_text("#map-now") == f"playing track {track}, {moment}"
    page.screenshot(path=str(_shots(tmp_path) / "web-map.png"), full_page=True)


def test_a_map_error_shows_and_a_good_draw_clears_it(page, web_library):
    page.click("#tab-map")
    _map_drawn(page, page.input_value("#map-embedder"))
    page.evaluate("() => document.getElementById('map-colour').append(new Option('no such column', 'no_such'))")
    page.select_option("#map-colour", "no_such")
    page.wait_for_selector("#map-error:not([hidden])", timeout=60_000)
    assert "no track column 'no_such'" in page.inner_text("#map-error")
    assert page.get_attribute("#map", "data-points") is None  # no map left that answers another choice
    page.select_option("#map-colour", "genre")
    _map_drawn(page, page.input_value("#map-embedder"))
    assert page.locator("#map-error").is_hidden()


def test_stats_are_tables_with_measured_recall(page, web_library, tmp_path):
    page.click("#tab-stats")
    text = page.inner_text("#stats")
    assert "{" not in text and "[[" not in text  # no raw JSON, no sections column counted
    for e in web_library.embeddings():
        assert page.locator("#stats td", has_text=e.key).count() == 1
    recalls = page.locator("#stats td[data-label='recall@10']").all_inner_texts()
    assert recalls == ["1.000"] * len(web_library.embeddings())  # Flat indexes, measured when built
    assert page.locator("#stats th", has_text="moments are").count() == 1
    page.screenshot(path=str(_shots(tmp_path) / "web-stats.png"), full_page=True)


def test_a_30_mb_upload_shows_the_size_error_and_a_good_search_clears_it(page, tmp_path):
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros(int(30e6 / 2), np.int16), 44100, subtype="PCM_16")
    page.set_input_files("#file", str(big))
    page.click("#search")
    page.wait_for_selector("#search-error:not([hidden])", timeout=60_000)
    assert "413" in page.inner_text("#search-error") and "--max-upload" in page.inner_text("#search-error")
    assert page.locator("#hits li").count() == 0
    _idle(page)
    assert page.inner_text("#search-status") == ""
    page.check("input[name=mode][value=moment]")
    page.fill("#k", "3")
    page.click("#search")
    _shown(page, 3)
    assert page.locator("#search-error").is_hidden()


def test_a_newer_query_supersedes_a_slow_one_shown_busy_meanwhile(page, web_library):
    page.evaluate(SLOW_MOMENT)
    features, first, other = _key(web_library, "features45"), _by_file(web_library, "t0.wav"), \
        _by_file(web_library, "t4.wav")
    page.check("input[name=mode][value=moment]")
    page.select_option("#embedder", features)
    page.fill("#k", "4")
    page.select_option("#track", str(first))
    page.click("#search")
    _shown(page, 4)  # hits of an earlier query, about to be replaced
    page.eval_on_selector("#at", "(a) => { a.value = '5'; a.dispatchEvent(new Event('input')); }")
    page.click("#search")  # answered after 3 s
    assert page.locator("#hits li").count() == 0  # the old hits go at once
    assert page.get_attribute("#search-form", "aria-busy") == "true"
    assert page.locator("#search-status.busy").is_visible()
    assert "searching" in page.inner_text("#search-status")
    page.select_option("#track", str(other))
    page.eval_on_selector("#at", "(a) => { a.value = '0'; a.dispatchEvent(new Event('input')); }")
    page.click("#search")  # the newer query, answered at once
    shown = _shown(page, 4)
    assert shown == _expected(search(web_library, Query.moment(other, 0.0), embedder=features, k=4))
    _idle(page)
    assert page.inner_text("#search-status") == ""
    page.wait_for_timeout(3500)  # the slow answer has come and gone
    assert _shown(page, 4) == shown
    assert page.locator("#search-error").is_hidden()


def test_hits_show_metadata_for_people_and_sections_on_the_timeline(page, web_library):
    page.check("input[name=mode][value=moment]")
    page.select_option("#embedder", _key(web_library, "features45"))
    page.select_option("#track", str(_by_file(web_library, "t1.wav")))
    page.fill("#k", "6")
    page.select_option("#by", "track")
    page.click("#search")
    shown = _shown(page, 6)
    names = dict(zip(web_library.tracks["track_id"].astype(int), web_library.tracks["uri"]))
    for (track, _), item in zip(shown, page.locator("#hits li").all()):
        i = int(Path(names[track]).stem[1:])
        facts = _facts(item)
        assert facts["key"] == ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"][KEYS[i]]
        assert facts["tempo"] == f"{round(BPM[i])} BPM" and facts["genre"] == GENRES[i]
        assert "sections" not in facts and "[[" not in item.inner_text()
        assert item.locator(".timeline .section").all_inner_texts() == ["intro", GENRES[i]]
        assert item.locator(".timeline .moment").count() == 1
        assert item.locator(".timeline .ends").inner_text().split() == ["0:00", "0:12"]
        assert float(item.locator(".score").inner_text().split()[1]) <= 1.0001


def test_with_several_embeddings_the_page_answers_without_naming_one(page, server, web_library):
    import urllib.request
    with urllib.request.urlopen(server + "/stats") as r:
        stats = json.load(r)
    default = stats.get("default_embedding") or stats["embeddings"][0]["key"]
    assert len(stats["embeddings"]) == 3
    assert page.input_value("#embedder") == default
    assert "default" in page.inner_text("#embedder-note")
    page.check("input[name=mode][value=moment]")
    page.fill("#k", "3")
    page.click("#search")
    _shown(page, 3)
    assert page.inner_text("#summary").endswith(f"answered by {default}")
    page.check("input[name=mode][value=hybrid]")  # only clap has a text tower: it is chosen
    assert page.locator("#embedder option").all_inner_texts() == [
        _key(web_library, "clap") + (" (default)" if default == _key(web_library, "clap") else "")]
    page.fill("#text", "slow piano")
    page.click("#search")
    _shown(page, 3)
    assert page.inner_text("#summary").endswith(f"answered by {_key(web_library, 'clap')}")


def test_the_page_fits_the_window_at_desktop_and_phone_widths(sized, server, web_library, tmp_path):
    page, width = sized, sized.viewport_size["width"]
    shots = _shots(tmp_path)
    for label in page.locator(".modes label").all():  # a radio button stays on its label's line
        box = label.bounding_box()
        assert box["height"] < 40, (label.inner_text(), box)
    page.check("input[name=mode][value=moment]")
    page.fill("#k", "5")
    page.click("#search")
    _shown(page, 5)
    assert _overflow(page) == 0
    page.screenshot(path=str(shots / f"web-search-{width}.png"), full_page=True)
    page.click("#tab-map")
    _map_drawn(page, page.input_value("#map-embedder"))
    assert _overflow(page) == 0
    page.screenshot(path=str(shots / f"web-map-{width}.png"), full_page=True)
    page.click("#tab-stats")
    assert _overflow(page) == 0
    page.screenshot(path=str(shots / f"web-stats-{width}.png"), full_page=True)
    assert page.failed == []  # nothing the page asked for was missing (favicon included)
    icon = page.request.get(server + "/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/")


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
