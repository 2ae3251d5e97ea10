"""Describe a moment: key, tempo, loudness, dynamics, brightness, tags, instruments and voice, the
neighbourhood (what the nearest moments are labelled and tagged), and a short summary built from these
numbers by a template (seed S0's "musical characteristics"), optionally rewritten by an LLM prompted with
the descriptors and the neighbours' metadata (seed S2's approach).

:func:`describe` takes the library (like :func:`audiorag.search.search`); ``Library`` is a lower layer
and has no ``describe`` method. The query is a library moment (``Query.moment``) or a clip
(``Query.audio``):

- **key, mode, confidence, tempo, loudness** — the segment's stored descriptors
  (:mod:`audiorag.library.descriptors`) for a moment of a library built with them; computed from the
  clip with the same function (:func:`audiorag.descriptors.tonal.describe`) otherwise;
- **valence, arousal, mood, mood confidence** — :mod:`audiorag.descriptors.mood`'s model: the segment's
  stored values (the library's taggers' tags included), or computed from the clip's descriptors and its tags;
- **dynamics** — loudness range in dB (95th − 10th percentile of 400 ms RMS levels, frames above −70 dBFS);
- **brightness** — spectral centroid in Hz (frames weighted by their energy);
- **tags** — the probabilities of every tagging embedding (musicnn): the segment's stored row, or the
  clip's windows tagged by the same model and averaged; **instruments** and **voice** — the largest
  probability among the tags naming each instrument, voice and its absence (:data:`INSTRUMENTS`);
- **text tags** — for every embedding with a text tower (clap, clamp3, ttmr): the cosine of the moment's
  vector (stored, or the clip's windows embedded and averaged) to each of MagnaTagATune's 50 tags (musicnn's
  ``MTT_TAGS``) embedded as ``"<tag> music"`` by that tower, best first — zero-shot tags, similarities rather
  than probabilities;
- **neighbourhood** — the ``k`` nearest moments of other tracks (:func:`audiorag.search.search`): votes
  of their labels weighted by score (``agreement`` is the top label's share) and their score-weighted
  mean tags.

Each summary statement carries the field and number it states (``statements``).

>>> from audiorag.describe import brightness_hz
>>> sr = 22050; t = np.arange(sr) / sr
>>> round(brightness_hz(np.sin(2 * np.pi * 1000 * t).astype("float32"), sr), -1)
1000.0
"""

from __future__ import annotations

import http.client
import json
import math
import os
import socket
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .analysis.tagging import votes
from .audio import Clip, load_clip
from .descriptors import mood as mood_model
from .descriptors.tonal import describe as tonal
from .descriptors.tonal import key_name
from .embedders import l2_normalise
from .errors import LLMError, ParameterError
from .io import decode_path
from .library import conditioning
from .library.descriptors import present
from .library.indexes import list_indexes
from .search import Query, check_k, context, search
from .search.vectors import query_vectors

#: instrument / voice → the tag names (musicnn MTT and MSD) that state it
INSTRUMENTS = {
    "guitar": ("guitar",), "piano": ("piano",), "drums": ("drums", "beat", "beats"), "synth": ("synth",),
    "strings": ("strings", "violin", "cello"), "violin": ("violin",), "cello": ("cello",), "flute": ("flute",),
    "harpsichord": ("harpsichord",), "harp": ("harp",), "sitar": ("sitar",),
}
VOICE = ("vocal", "vocals", "singing", "voice", "female", "male", "woman", "man", "choir", "choral", "opera",
         "male vocal", "female vocal", "male voice", "female voice", "female vocalists", "male vocalists",
         "female vocalist")
NO_VOICE = ("no vocals", "no vocal", "no voice", "instrumental")
#: word thresholds of the summary (upper bounds)
LOUDNESS_WORDS = ((-28.0, "quiet"), (-14.0, "moderate"), (math.inf, "loud"))
DYNAMICS_WORDS = ((4.0, "steady"), (10.0, "varying"), (math.inf, "wide-ranging"))
BRIGHTNESS_WORDS = ((800.0, "dark"), (2000.0, "warm"), (3500.0, "bright"), (math.inf, "very bright"))
KEY_CLEAR = 0.5       # key confidence from which the summary states the key without "probably"
TAG_SHOWN = 0.3       # probability from which the summary names an instrument or voice
N_TAGS = 10           # tags kept per tagger


@dataclass
class Description:
    """What :func:`describe` finds; ``to_dict()`` is JSON-serialisable."""

    query: dict
    key: str | None = None
    mode: str | None = None
    key_confidence: float | None = None
    tempo: float | None = None
    loudness_db: float | None = None
    dynamics_db: float | None = None
    brightness_hz: float | None = None
    valence: float | None = None
    arousal: float | None = None
    mood: str | None = None
    mood_confidence: float | None = None
    descriptors_from: str = "clip"          # "library" (stored segment columns) or "clip" (computed)
    tags: dict = field(default_factory=dict)          # tagger key → {tag: probability}, best first
    text_tags: dict = field(default_factory=dict)     # text-tower embedding key → {tag: cosine}, best first
    instruments: dict = field(default_factory=dict)   # instrument → probability, best first
    voice: dict = field(default_factory=dict)         # {"voice": p, "no voice": p}
    neighbourhood: dict = field(default_factory=dict)
    statements: list = field(default_factory=list)   # [{"text", "field", "value"}]
    llm: dict | None = None

    @property
    def summary(self) -> str:
        """The template summary: the statements' texts."""
        return " ".join(s["text"] for s in self.statements)

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary}

    def _repr_html_(self) -> str:
        """The notebook panel: the summary, then every statement's field and number, then the neighbours."""
        from html import escape
        rows = "".join(f"<tr><td>{escape(s['field'])}</td><td>{s['value']}</td><td>{escape(s['text'])}</td></tr>"
                       for s in self.statements)
        nb = self.neighbourhood.get("neighbours", [])
        cols = list(nb[0]) if nb else []
        near = "".join("<tr>" + "".join(f"<td>{escape(str(n[c]))}</td>" for c in cols) + "</tr>" for n in nb)
        return (f"<div class='audiorag-description'><p><b>{escape(self.summary)}</b></p>"
                f"<table><tr><th>field</th><th>value</th><th>statement</th></tr>{rows}</table>"
                f"<p>nearest moments ({escape(str(self.neighbourhood.get('embedder', '')))}):</p><table><tr>"
                + "".join(f"<th>{escape(c)}</th>" for c in cols) + f"</tr>{near}</table></div>")


# -- plain-array descriptors ---------------------------------------------------------------------

def brightness_hz(y: np.ndarray, sr: int, *, n_fft: int = 2048, hop: int = 512) -> float:
    """Spectral centroid (Hz) of mono audio, frames weighted by their energy (NaN for silence)."""
    y = np.asarray(y, np.float32)
    if len(y) < n_fft:
        y = np.pad(y, (0, n_fft - len(y)))
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop] * np.hanning(n_fft).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    total = power.sum()
    if total <= 0:
        return float("nan")
    return float((power.sum(axis=0) @ np.fft.rfftfreq(n_fft, 1 / sr)) / total)


def dynamics_db(y: np.ndarray, sr: int, *, frame: float = 0.4, hop: float = 0.1) -> float:
    """Loudness range (dB): 95th − 10th percentile of the frames' RMS levels above −70 dBFS.

    >>> sr = 8000; t = np.arange(4 * sr) / sr
    >>> y = np.sin(2 * np.pi * 440 * t) * np.where(t < 2, 1.0, 0.1)   # 20 dB step
    >>> round(dynamics_db(y.astype("float32"), sr))
    20
    """
    y = np.asarray(y, np.float64)
    n, h = max(1, int(frame * sr)), max(1, int(hop * sr))
    if len(y) <= n:
        return 0.0
    sq = np.concatenate([[0.0], np.cumsum(y ** 2)])
    a = np.arange(0, len(y) - n + 1, h)
    level = 10 * np.log10(np.maximum((sq[a + n] - sq[a]) / n, 1e-12))
    level = level[level > -70]
    return float(np.percentile(level, 95) - np.percentile(level, 10)) if len(level) else 0.0


def _word(value, words) -> str:
    return next(w for bound, w in words if value < bound)


def _num(v) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 4)


# -- the description -----------------------------------------------------------------------------

def _taggers(lib) -> list:
    return [e for e in lib.embeddings() if e.is_tagger]


def _neighbour_embedding(lib, embedder):
    if embedder is not None:
        return lib.embedding(embedder)
    indexed = [e for e in lib.embeddings()   # the full mix: not melody contours, not a stem (NAME@percussive)
               if e.is_primary and list_indexes(e)]
    if not indexed:
        raise ParameterError(f"{lib.path}: describe needs an indexed embedding for the neighbourhood; "
                             "build one with lib.build_index()")
    return indexed[0]


def _clip(lib, query: Query, emb) -> tuple[Clip, dict, int | None]:
    """The query's audio, what it is, and its segment id (a library moment)."""
    if query.kind == "moment":
        seg_id = context(lib, emb.key).layout.moment(query.track_id, query.at)
        row = lib.segments.iloc[seg_id]
        start, end = float(row["start"]), float(row["end"])
        uri = lib.tracks.set_index("track_id").at[query.track_id, "uri"]
        clip = load_clip(decode_path(uri), start=start, end=end, conditioning=conditioning(lib))
        return clip, {"kind": "moment", "track_id": query.track_id, "at": query.at, "segment_id": seg_id,
                      "start": start, "end": end}, seg_id
    if query.kind != "audio":
        raise ParameterError(f"describe: expected a moment or audio query, got {query.kind}")
    clip = query.clip(conditioning(lib))  # levelled / denoised as the library's tracks were
    name = "<array>" if isinstance(query.source, np.ndarray) else str(query.source)
    return clip, {"kind": "audio", "source": name, "start": clip.start, "end": clip.start + clip.duration}, None


def _clip_tags(lib, e, clip: Clip) -> np.ndarray:
    """Mean tag probabilities of the clip's library windows under tagger ``e`` (the stored model)."""
    model = e.embedder
    x = clip.at(model.sample_rate)
    starts, ends = lib.segmentation.windows(len(x) / model.sample_rate)
    if not len(starts):  # a clip shorter than a window, in a library that drops short tails: the whole clip
        starts, ends = np.zeros(1), np.array([len(x) / model.sample_rate])
    if hasattr(model, "prepare_track"):
        tags = model.run(model.prepare_track(x, starts, ends))["tags"]
    else:
        tags = model.embed_track_tagged(x, starts, ends)[1]
    return np.asarray(tags, np.float64).mean(axis=0)


def _text_tags(lib, query: Query, e) -> dict:
    """Zero-shot tags of the query under text-tower embedding ``e``: cosine to each of MagnaTagATune's tags."""
    from .embedders.musicnn import MTT_TAGS  # a text tower's model needs torch, as musicnn's module does
    vectors, _ = query_vectors(lib, e, query)
    audio = l2_normalise(np.asarray(vectors, np.float32).mean(axis=0))
    texts = e.postprocess(e.embedder.embed_text([f"{t} music" for t in MTT_TAGS]))
    return _best(dict(zip(MTT_TAGS, texts @ audio)), N_TAGS)


def _best(values: dict, n: int | None = None) -> dict:
    items = sorted(values.items(), key=lambda kv: -kv[1])[:n]
    return {k: round(float(v), 4) for k, v in items}


def _label_columns(tracks: pd.DataFrame) -> list[str]:
    """Track columns that label tracks: text with at most half as many values as tracks."""
    out = []
    for c in tracks.columns:
        if c in ("uri", "content_hash", "sha256", "sections") or tracks[c].dtype.kind not in "OUT":
            continue
        values = tracks[c].dropna()
        if len(values) and values.map(lambda v: isinstance(v, str)).all() and values.nunique() <= len(tracks) / 2:
            out.append(c)
    return out


def _neighbourhood(lib, query: Query, emb, k: int, taggers: list, own_track: int | None, exclude: bool) -> dict:
    hits = search(lib, query, embedder=emb.key, k=k, exclude_same_track=exclude)
    weights = np.clip(hits["score"].to_numpy(np.float64), 0, None)
    labels = {}
    own = lib.tracks.set_index("track_id")
    for col in _label_columns(lib.tracks):
        votes_ = votes(np.array([hits[col].astype(str).to_numpy()], dtype=object), [weights])[0] if len(hits) else {}
        top = next(iter(votes_.items()), (None, 0.0))
        entry = {"votes": votes_, "top": top[0], "agreement": round(float(top[1]), 4),
                 "count": int((hits[col].astype(str) == top[0]).sum()) if top[0] is not None else 0}
        if own_track is not None:
            entry["own"] = str(own.at[own_track, col])
        labels[col] = entry
    tags = {}
    w = weights / weights.sum() if weights.sum() > 0 else np.full(len(weights), 1 / max(len(weights), 1))
    for e in taggers:
        rows = np.asarray(e.tags()[hits["segment_id"].to_numpy()], np.float64)
        tags[e.key] = _best(dict(zip(e.tag_names, w @ rows)), N_TAGS) if len(rows) else {}
    shown = [c for c in ("track_id", "start", "end", "score", *labels) if c in hits.columns]
    return {"embedder": emb.key, "k": k, "labels": labels, "tags": tags,
            "neighbours": json.loads(hits[shown].to_json(orient="records", double_precision=4))}


def describe(lib, query: Query, *, k: int = 10, embedder=None, exclude_same_track: bool = True) -> Description:
    """Describe a library moment or a clip (see the module docstring).

    ``embedder`` names the embedding whose index finds the neighbourhood (default: the first indexed full-mix one);
    the neighbourhood leaves out the queried track (a moment's, or the library track a clip's file is) unless
    ``exclude_same_track=False``.

    >>> d = describe(lib, Query.moment(3, at=12.0))                           # doctest: +SKIP
    >>> d.key, d.tempo, d.instruments, d.neighbourhood["labels"]["genre"]["top"]  # doctest: +SKIP
    ('A minor', 121.3, {'drums': 0.62, ...}, 'techno')
    >>> print(d.summary)                                                      # doctest: +SKIP
    """
    check_k(k, "describe")
    if not isinstance(query, Query):
        raise ParameterError(f"describe: expected a Query (Query.moment / Query.audio), got {type(query).__name__}")
    emb = _neighbour_embedding(lib, embedder)
    clip, what, seg_id = _clip(lib, query, emb)
    y, sr = clip.y, clip.sr
    d = Description(query=what, dynamics_db=_num(dynamics_db(y, sr)), brightness_hz=_num(brightness_hz(y, sr)))
    stored = None
    if seg_id is not None:
        if present(lib):
            row = lib.descriptors().iloc[seg_id]
            stored = row if isinstance(row["key"], str) else None
    if stored is not None:
        d.key, d.mode, d.descriptors_from = stored["key"], stored["mode"], "library"
        d.key_confidence, d.tempo, d.loudness_db = (_num(stored[c]) for c in ("key_confidence", "tempo", "loudness_db"))
        d.valence, d.arousal, d.mood_confidence = (_num(stored[c]) for c in ("valence", "arousal", "mood_confidence"))
        d.mood = stored["mood"]
    else:
        t = tonal(y, sr, [0.0], [len(y) / sr])
        d.key, d.mode = key_name(t["tonic"][0], t["mode"][0]), ("major", "minor")[int(t["mode"][0])]
        d.key_confidence, d.tempo, d.loudness_db = (_num(t[c][0]) for c in ("key_confidence", "tempo", "loudness_db"))
    taggers = _taggers(lib)
    merged: dict = {}
    for e in taggers:
        probs = np.asarray(e.tags()[seg_id], np.float64) if seg_id is not None else _clip_tags(lib, e, clip)
        d.tags[e.key] = _best(dict(zip(e.tag_names, probs)), N_TAGS)
        for name, p in zip(e.tag_names, probs):
            merged[name.lower()] = max(merged.get(name.lower(), 0.0), float(p))
    if merged:
        d.instruments = _best({i: max(merged.get(t, 0.0) for t in ts) for i, ts in INSTRUMENTS.items()
                               if any(t in merged for t in ts)})
        d.voice = {"voice": round(max((merged.get(t, 0.0) for t in VOICE), default=0.0), 4),
                   "no voice": round(max((merged.get(t, 0.0) for t in NO_VOICE), default=0.0), 4)}
    if stored is None:
        m = mood_model.estimate(t, {name: np.array([p]) for name, p in merged.items()})
        d.valence, d.arousal, d.mood_confidence = (_num(m[c][0]) for c in ("valence", "arousal", "mood_confidence"))
        d.mood = str(m["mood"][0])
    for e in lib.embeddings():
        if e.has_text and e.is_primary:
            d.text_tags[e.key] = _text_tags(lib, query, e)
    d.neighbourhood = _neighbourhood(lib, query, emb, int(k), taggers, query.track_id, exclude_same_track)
    d.statements = statements(d)
    return d


def statements(d: Description) -> list[dict]:
    """The template summary: one statement per descriptor, each with the field and number it states.

    >>> d = Description(query={}, key="A minor", key_confidence=0.82, tempo=121.4, loudness_db=-18.0)
    >>> [s["text"] for s in statements(d)]
    ['In A minor (key confidence 0.82).', 'About 121 BPM.', 'Moderate loudness (-18.0 dBFS).']
    """
    out = []

    def say(text, field_, value):
        out.append({"text": text, "field": field_, "value": value})

    if d.key is not None and d.key_confidence is not None:
        if d.key_confidence >= KEY_CLEAR:
            say(f"In {d.key} (key confidence {d.key_confidence:.2f}).", "key_confidence", d.key_confidence)
        else:
            say(f"Key unclear, perhaps {d.key} (key confidence {d.key_confidence:.2f}).", "key_confidence",
                d.key_confidence)
    if d.tempo is not None:
        say(f"About {d.tempo:.0f} BPM.", "tempo", d.tempo)
    if d.loudness_db is not None:
        say(f"{_word(d.loudness_db, LOUDNESS_WORDS).capitalize()} loudness ({d.loudness_db:.1f} dBFS).",
            "loudness_db", d.loudness_db)
    if d.mood is not None:
        say(f"Mood: {d.mood} (valence {d.valence:.2f}, arousal {d.arousal:.2f}; confidence {d.mood_confidence:.2f}).",
            "mood_confidence", d.mood_confidence)
    if d.dynamics_db is not None:
        say(f"{_word(d.dynamics_db, DYNAMICS_WORDS).capitalize()} dynamics ({d.dynamics_db:.1f} dB range).",
            "dynamics_db", d.dynamics_db)
    if d.brightness_hz is not None:
        say(f"{_word(d.brightness_hz, BRIGHTNESS_WORDS).capitalize()} timbre (spectral centroid "
            f"{d.brightness_hz:.0f} Hz).", "brightness_hz", d.brightness_hz)
    for key, tags in d.tags.items():
        top = list(tags.items())[:3]
        if top:
            say(f"Tagged {', '.join(f'{t} ({p:.2f})' for t, p in top)} by {key.split('-')[0]}.",
                f"tags.{key}.{top[0][0]}", top[0][1])
    for key, tags in d.text_tags.items():
        top = list(tags.items())[:3]
        if top:
            say(f"Closest tag texts under {key.split('-')[0]}: {', '.join(f'{t} ({c:.2f})' for t, c in top)}.",
                f"text_tags.{key}.{top[0][0]}", top[0][1])
    heard = [(i, p) for i, p in d.instruments.items() if p >= TAG_SHOWN]
    if heard:
        say(f"Instruments: {', '.join(f'{i} ({p:.2f})' for i, p in heard)}.", f"instruments.{heard[0][0]}",
            heard[0][1])
    if d.voice:
        v, n = d.voice["voice"], d.voice["no voice"]
        text = f"Voice likely ({v:.2f})." if v >= max(TAG_SHOWN, n) else f"Probably instrumental (voice {v:.2f})."
        say(text, "voice.voice", v)
    nb = d.neighbourhood
    for col, entry in nb.get("labels", {}).items():
        if entry["top"] is not None:
            say(f"{entry['count']} of the {len(nb['neighbours'])} nearest moments are {col} {entry['top']} "
                f"(weighted agreement {entry['agreement']:.2f}).", f"neighbourhood.labels.{col}.agreement",
                entry["agreement"])
    return out


# -- optional LLM summary ------------------------------------------------------------------------

SYSTEM_PROMPT = ("You describe a moment of music for a listener in two or three sentences: its musical "
                 "characteristics and its emotional profile. Use only the measurements and the metadata of the "
                 "most similar moments given; do not invent facts.")


def llm_prompt(d: Description) -> str:
    """The user message: the descriptors, tags and the neighbours' metadata (seed S2's approach)."""
    facts = {k: v for k, v in d.to_dict().items() if k not in ("neighbourhood", "llm", "statements", "summary")}
    nb = d.neighbourhood
    return ("Measurements of the moment:\n" + json.dumps(facts, indent=1)
            + "\n\nMetadata of its nearest moments in the library (most similar first):\n"
            + json.dumps(nb.get("neighbours", []), indent=1)
            + "\n\nTheir label votes and mean tags:\n"
            + json.dumps({"labels": nb.get("labels", {}), "tags": nb.get("tags", {})}, indent=1))


def llm_summary(d: Description, url: str, model: str, *, token: str | None = None, timeout: float = 30.0,
                retries: int = 3, backoff: float = 1.0) -> dict:
    """Ask an OpenAI-compatible chat endpoint (``POST {url}/chat/completions``) to summarise ``d``;
    returns (and stores in ``d.llm``) the answer with the prompt, model, endpoint and time.

    ``timeout`` is a total deadline per attempt (connecting, sending, and reading the whole answer).
    Redirects are not followed: the bearer ``token`` only ever goes to ``url``'s own origin.
    Connection failures, timeouts, 429 and 5xx answers are retried ``retries`` times (waits ``backoff``,
    2×, 4×... seconds); then, or on any other error, :class:`LLMError` with one line naming the endpoint.

    >>> llm_summary(d, "http://127.0.0.1:8080/v1", "llama-3-8b")["answer"]       # doctest: +SKIP
    """
    if not url.startswith(("http://", "https://")):
        raise ParameterError(f"--llm must be an http(s) URL, got {url!r}")
    endpoint = url.rstrip("/") + "/chat/completions"
    prompt = llm_prompt(d)
    body = json.dumps({"model": model, "temperature": 0,
                       "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                                    {"role": "user", "content": prompt}]}).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    reason = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            status, why, text, location = _post(endpoint, body, headers, timeout)
        except (OSError, http.client.HTTPException) as exc:
            reason = (f"no complete answer within {timeout:g} s" if isinstance(exc, (TimeoutError, _Deadline))
                      else str(exc) or type(exc).__name__)
            continue
        if 300 <= status < 400:
            raise LLMError(f"LLM {endpoint}: HTTP {status} redirect to {location or '?'} not followed "
                           "(the token goes only to the given endpoint; give the final URL)")
        if status >= 400:
            reason = f"HTTP {status} {why}".strip()
            if status != 429 and status < 500:
                raise LLMError(f"LLM {endpoint}: {reason}")
            continue
        try:
            answer = json.loads(text)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"LLM {endpoint}: not an OpenAI-style chat answer ({type(exc).__name__}: {exc})") from None
        break
    else:
        raise LLMError(f"LLM {endpoint} unreachable after {retries + 1} attempts: {reason}")
    d.llm = {"model": model, "endpoint": endpoint, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "system": SYSTEM_PROMPT, "prompt": prompt, "answer": str(answer).strip()}
    return d.llm


class _Deadline(OSError):
    """An attempt ran past its total deadline."""


def _post(endpoint: str, body: bytes, headers: dict, timeout: float) -> tuple[int, str, str, str | None]:
    """One POST: ``(status, reason, body text, Location header)``, within ``timeout`` seconds in total. No
    redirect is followed. The exchange runs in a worker thread that the caller stops waiting for at the deadline
    (a server trickling bytes resets every per-read timeout, so only a deadline bounds it)."""
    parts = urllib.parse.urlsplit(endpoint)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    result: list = []

    def exchange():
        try:
            conn.request("POST", parts.path + (f"?{parts.query}" if parts.query else ""), body, headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            result.append((resp.status, resp.reason, text, resp.getheader("Location")))
        except (OSError, http.client.HTTPException) as exc:
            result.append(exc)
    worker = threading.Thread(target=exchange, daemon=True, name="audiorag-llm")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        sock = conn.sock
        if sock is not None:  # ends the worker's exchange as soon as the OS lets it
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        raise _Deadline("deadline")
    conn.close()
    if isinstance(result[0], Exception):
        raise result[0]
    return result[0]


def llm_token() -> str | None:
    """The LLM bearer token from ``$AUDIORAG_LLM_TOKEN`` (none: no Authorization header)."""
    return os.environ.get("AUDIORAG_LLM_TOKEN") or None
