// The listening page of `audiorag serve`: every call goes to the same REST API documented at /docs.
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token") || sessionStorage.getItem("audiorag-token");
if (token) sessionStorage.setItem("audiorag-token", token);
const auth = () => (token ? { Authorization: `Bearer ${token}` } : {});
let stats = null, recording = null, recorder = null;
const durations = {};  // track id → seconds (from /tracks; fetched one by one beyond the first page)

// -- formatting: what a person reads ---------------------------------------------------------------
const PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
const MODES = ["major", "minor"];

// 7.25 → "7.25", 109.6999 → "109.7", 1234.5 → "1235": three significant figures at most below 1000
function number(v) {
  if (Number.isInteger(v)) return String(v);
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : Math.abs(v) >= 1 ? 2 : 3;
  return String(+v.toFixed(digits));
}

// seconds → "1:05" ("1:05.5" when not whole)
function clock(seconds) {
  const whole = Math.abs(seconds - Math.round(seconds)) < 0.05;
  const s = whole ? Math.round(seconds) : seconds;
  const m = Math.floor(s / 60), rest = s - 60 * m;
  const sec = whole ? String(rest).padStart(2, "0") : rest.toFixed(1).padStart(4, "0");
  return `${m}:${sec}`;
}

const span = (start, end) => `${clock(start)}–${clock(end)}`;

// a key column: a pitch class number (0 = C) with an optional mode number, or a name already ("A minor")
function keyName(key, mode) {
  if (typeof key !== "number") return String(key);
  const name = PITCH_CLASSES[((Math.round(key) % 12) + 12) % 12];
  return typeof mode === "number" && MODES[mode] ? `${name} ${MODES[mode]}` : name;
}

function parseSections(raw) {
  if (typeof raw !== "string" || !raw.startsWith("[")) return Array.isArray(raw) ? raw : null;
  try {
    const sections = JSON.parse(raw);
    return Array.isArray(sections) && sections.every((s) => Array.isArray(s) && s.length >= 2) ? sections : null;
  } catch { return null; }
}

const jsonLike = (value) => typeof value === "string" && /^[[{]/.test(value);

// a track's metadata as [label, text] pairs for people; `sections` goes on the timeline instead
function describe(metadata) {
  const out = [];
  for (const [name, value] of Object.entries(metadata)) {
    if (value === null || value === "" || name.startsWith("contrib:") || name === "sections" || jsonLike(value)) continue;
    if (typeof value === "object") continue;
    const label = name.replace(/^track\./, "").replace(/_/g, " ");
    if (name === "key" || name === "track.key") out.push(["key", keyName(value, metadata.mode)]);
    else if (name === "mode" && typeof value === "number") {
      if (typeof metadata.key !== "number" && MODES[value]) out.push(["mode", MODES[value]]);
    } else if (/^(bpm|tempo)$/.test(name)) out.push(["tempo", `${Math.round(value)} BPM`]);
    else if (/_db$/.test(name)) out.push([label.replace(/ db$/, ""), `${value.toFixed(1)} dB`]);
    else if (/duration$/.test(name)) out.push([label, clock(value)]);
    else if (typeof value === "boolean") out.push([label, value ? "yes" : "no"]);
    else if (typeof value === "number") out.push([label, number(value)]);
    else out.push([label, value]);
  }
  return out;
}

// -- API -------------------------------------------------------------------------------------------
class ApiError extends Error {}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...auth(), ...(options.headers || {}) } });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(`the server did not answer (${error.message})`);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const what = body && body.detail ? body.detail : response.statusText;
    throw new ApiError(`${what} (HTTP ${response.status}${body && body.error ? ` ${body.error}` : ""})`);
  }
  return body;
}

function showError(box, error) {
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

// One request at a time per view: a newer one aborts the older, whose answer is then never shown.
class Latest {
  constructor(status, error, busyText) { Object.assign(this, { status, error, busyText, seq: 0, controller: null }); }

  // run `work(signal)`; resolves to its result, or to undefined when it failed (error shown) or was superseded
  async run(work, busyText = this.busyText) {
    const seq = ++this.seq;
    if (this.controller) this.controller.abort();
    const controller = this.controller = new AbortController();
    showError(this.error, null);  // an old request's error says nothing about this one
    this.busy(busyText);
    try {
      const result = await work(controller.signal);
      return seq === this.seq ? result : undefined;
    } catch (error) {
      if (seq === this.seq && error.name !== "AbortError") showError(this.error, error);
      return undefined;
    } finally {
      if (seq === this.seq) { this.busy(null); this.controller = null; }
    }
  }

  busy(text) {
    this.status.textContent = text || "";
    this.status.classList.toggle("busy", Boolean(text));
    this.status.closest("form").setAttribute("aria-busy", String(Boolean(text)));
  }
}

// a moment's audio: straight from its URL (the server cuts it, Range requests work), or through fetch
// with the token when the server wants one (an <audio> element cannot send headers)
async function play(audio, url) {
  if (token) {
    const response = await fetch(url, { headers: auth() });
    if (!response.ok) throw new Error(`${response.status}: ${(await response.json()).detail}`);
    url = URL.createObjectURL(await response.blob());
  }
  if (audio.dataset.src !== url) {
    audio.src = url;
    audio.dataset.src = url;
  }
  await audio.play();
}

// -- views -----------------------------------------------------------------------------------------
function showView(name) {
  for (const view of ["search", "map", "stats"]) {
    $(`view-${view}`).hidden = view !== name;
    $(`tab-${view}`).setAttribute("aria-selected", String(view === name));
  }
  if (name === "stats") renderStats();
  if (name === "map") drawMap();
}

const mode = () => document.querySelector("input[name=mode]:checked").value;

function showMode() {
  const visible = new Set({ file: ["file"], record: ["record"], text: ["text"], hybrid: ["text", "hybrid", "file"],
                            moment: ["moment"] }[mode()]);
  document.querySelectorAll("[class^=for-], [class*=' for-']").forEach((el) => {
    const kinds = [...el.classList].filter((c) => c.startsWith("for-")).map((c) => c.slice(4));
    el.hidden = !kinds.some((k) => visible.has(k)) && !(mode() === "hybrid" && kinds.includes("moment"));
  });
  chooseEmbeddings();
}

// -- embeddings: which can answer the query, which one answers ----------------------------------------
// the query kind an embedding must answer: audio (file, recording, moment), hum, text or hybrid
function queryKind() {
  const m = mode();
  if (m === "record" && $("as-hum").checked) return "hum";
  return m === "text" || m === "hybrid" ? m : "audio";
}

const isMelody = (e) => e.name === "melody";
const CAN = { audio: (e) => !isMelody(e), hum: isMelody, text: (e) => Boolean(e.text), hybrid: (e) => e.text === "tower" };
const NEEDS = { hum: "the melody embedding (audiorag build LIBRARY --embedder melody)",
                text: "an embedding with a text tower (clap) or a tagger (musicnn-mtt)",
                hybrid: "an embedding with a text tower (clap)", audio: "an audio embedding" };

// the library's default embedding: /stats's default_embedding when the server names one, else the first listed
function defaultKey() {
  if (!stats || !stats.embeddings.length) return null;
  return stats.default_embedding || stats.embeddings[0].key;
}

// the embedding choices of `select` for a query kind: the ones that can answer it; keeps the person's choice
// when it still can, else the default, else the first that can
function fillEmbeddings(select, kind) {
  if (!stats) return;
  const usable = stats.embeddings.filter(CAN[kind]);
  const chosen = select.dataset.chosen;
  const keys = usable.map((e) => e.key);
  const key = keys.includes(chosen) ? chosen : keys.includes(defaultKey()) ? defaultKey() : keys[0];
  options(select, keys, (k) => (k === defaultKey() && stats.embeddings.length > 1 ? `${k} (default)` : k));
  select.disabled = !keys.length;
  if (key) select.value = key;
  return usable;
}

function chooseEmbeddings() {
  if (!stats) return;
  const kind = queryKind(), usable = fillEmbeddings($("embedder"), kind);
  const note = $("embedder-note"), key = $("embedder").value;
  if (!usable.length) note.textContent = `${kind} queries need ${NEEDS[kind]}; this library has none`;
  else if (stats.embeddings.length === 1) note.textContent = "the library's only embedding answers";
  else if (key === defaultKey()) note.textContent = `the library's default answers; ${stats.embeddings.length - 1} more to pick from`;
  else if (usable.length < stats.embeddings.length) {
    note.textContent = `${usable.length} of ${stats.embeddings.length} embeddings can answer ${kind} queries`;
  } else note.textContent = "";
}

// -- search ----------------------------------------------------------------------------------------
// the options every search takes; text and hum queries are not re-ranked
function commonOptions(form, { rerank: withRerank = true } = {}) {
  const where = [];
  if ($("filter-column").value && $("filter-value").value) where.push(`${$("filter-column").value}=${$("filter-value").value}`);
  const rerank = [];
  if (Number($("diversity").value) > 0) rerank.push(`diversity=${$("diversity").value}`);
  if (Number($("max-per-track").value) > 0) rerank.push(`max_per_track=${$("max-per-track").value}`);
  const options = { k: $("k").value, by: $("by").value, embedder: $("embedder").value, where,
                    rerank: withRerank ? rerank.join(",") : "" };
  for (const [name, value] of Object.entries(options)) {
    if (Array.isArray(value)) value.forEach((v) => form.append(name, v));
    else if (value !== "" && value != null) form.append(name, value);
  }
  return form;
}

// a field left empty is left out (the server refuses an empty field rather than guess its default)
function filled(form, name) {
  if ($(name).value !== "") form.append(name, $(name).value);
}

function clipSpan(form) {
  filled(form, "start");
  filled(form, "end");
}

// the request of the query in the form: [path, fetch options]
function searchRequest() {
  const m = mode(), file = $("file").files[0];
  if (m === "file" || m === "record") {
    const form = new FormData();
    const blob = m === "file" ? file : recording;
    if (!blob) throw new ApiError(m === "file" ? "choose an audio file first" : "record something first");
    form.append("file", blob, m === "file" ? file.name : "recording.wav");
    if (m === "file") clipSpan(form);
    const hum = queryKind() === "hum";
    return [hum ? "search/hum" : "search/audio", { method: "POST", body: commonOptions(form, { rerank: !hum }) }];
  }
  if (m === "text" || m === "hybrid") {
    if (!$("text").value.trim()) throw new ApiError("describe what to look for first");
  }
  if (m === "text") {
    const form = commonOptions(new FormData(), { rerank: false });
    const params = Object.fromEntries(form), where = form.getAll("where");
    return ["search/text", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...params, k: Number(params.k), where, text: $("text").value }) }];
  }
  if (m === "hybrid") {
    const form = commonOptions(new FormData());
    form.append("text", $("text").value);
    filled(form, "alpha");
    if (file) { form.append("file", file, file.name); clipSpan(form); }
    else { filled(form, "track"); filled(form, "at"); }
    return ["search/hybrid", { method: "POST", body: form }];
  }
  const params = new URLSearchParams(commonOptions(new FormData()));
  params.append("track", $("track").value);
  params.append("at", $("at").value);
  return [`search/moment?${params}`, {}];
}

let searches;

async function runSearch(event) {
  event.preventDefault();
  // the old hits go at once: what is listed always answers the query on screen
  $("hits").replaceChildren();
  $("hits").setAttribute("aria-busy", "true");
  $("summary").textContent = "";
  const embedder = $("embedder").value;
  const result = await searches.run(async (signal) => {
    const [path, options] = searchRequest();
    return api(path, { ...options, signal });
  }, `searching${embedder ? ` with ${embedder}` : ""}…`);
  if (searches.controller === null) $("hits").setAttribute("aria-busy", "false");
  if (result) renderHits(result);
}

function renderHits(result) {
  const list = $("hits");
  list.replaceChildren();
  const took = result.took_ms < 100 ? result.took_ms.toFixed(1) : Math.round(result.took_ms);
  $("summary").textContent = result.hits.length
    ? `${result.hits.length} ${result.hits.length === 1 ? "hit" : "hits"} in ${took} ms · answered by ${result.embedding}`
    : `no hits (${result.embedding}): loosen the filter or search for something else`;
  if (result.matched_tags) {
    $("summary").textContent += ` · matched tags: ${Object.keys(result.matched_tags).join(", ")}`;
  }
  for (const hit of result.hits) list.append(renderHit(hit));
}

function renderHit(hit) {
  const item = document.createElement("li");
  item.className = "hit";
  item.dataset.track = hit.track_id;
  item.dataset.start = hit.start;
  item.dataset.end = hit.end;
  const title = document.createElement("div");
  title.className = "title";
  title.innerHTML = `<b class="file"></b> <span class="when"></span> <span class="score"></span>`;
  title.querySelector("b").textContent = hit.file || `track ${hit.track_id}`;
  title.querySelector(".when").textContent = span(hit.start, hit.end);
  title.querySelector(".score").textContent = `score ${hit.score.toFixed(3)}` +
    (hit.n_segments ? ` · ${hit.n_segments} matching ${hit.n_segments === 1 ? "moment" : "moments"}` : "");
  item.append(title);

  const facts = describe(hit.metadata);
  if (facts.length) {
    const meta = document.createElement("dl");
    meta.className = "meta";
    for (const [label, text] of facts) {
      const pair = document.createElement("div");
      pair.append(Object.assign(document.createElement("dt"), { textContent: label }),
                  Object.assign(document.createElement("dd"), { textContent: text }));
      meta.append(pair);
    }
    item.append(meta);
  }
  const factors = Object.entries(hit.metadata).filter(([k]) => k.startsWith("contrib:"));
  if (factors.length) {
    const why = document.createElement("div");
    why.className = "factors";
    why.textContent = "score = " + factors.map(([k, v]) => `${k.slice(8)} ${v.toFixed(3)}`).join(" + ");
    item.append(why);
  }
  if (hit.tags) {
    const tags = document.createElement("div");
    tags.className = "tags";
    tags.textContent = "tags: " + Object.entries(hit.tags).map(([t, p]) => `${t} ${p.toFixed(2)}`).join(", ");
    item.append(tags);
  }

  const player = document.createElement("div");
  player.className = "player";
  const button = document.createElement("button");
  button.type = "button";
  button.className = "play";
  button.textContent = "▶ Play";
  button.setAttribute("aria-label", `play hit ${hit.rank}: ${span(hit.start, hit.end)}`);
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.preload = "none";
  audio.hidden = true;  // the player's own controls appear once it plays; until then the timeline says enough
  button.addEventListener("click", () => {
    audio.hidden = false;
    play(audio, hit.audio).catch((e) => showError($("search-error"), e));
  });
  const timeline = document.createElement("div");
  timeline.className = "timeline";
  player.append(button, timeline, audio);
  item.append(player);
  trackDuration(hit.track_id).then((d) => drawTimeline(timeline, audio, hit, d));
  return item;
}

// a track's duration: from the list loaded at the start, else asked once
async function trackDuration(id) {
  if (!(id in durations)) {
    durations[id] = api(`tracks/${id}`).then((t) => t.duration).catch(() => null);
  }
  return durations[id];
}

// the whole track as a bar: its sections (labelled), the hit's moment, and a playhead while it plays
function drawTimeline(box, audio, hit, duration) {
  const sections = parseSections(hit.metadata.sections) || [];
  const total = Math.max(duration || 0, hit.end, ...sections.map((s) => Number(s[1]) || 0));
  if (!(total > 0)) return;
  const pct = (t) => `${(100 * Math.min(Math.max(t, 0), total)) / total}%`;
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.setAttribute("role", "img");
  const labels = sections.map((s) => `${s[2] ?? "section"} ${span(s[0], s[1])}`);
  bar.setAttribute("aria-label", `track of ${clock(total)}` + (labels.length ? `; sections: ${labels.join(", ")}` : "") +
    `; this moment ${span(hit.start, hit.end)}`);
  const palette = ["#dbeafe", "#fef3c7", "#dcfce7", "#fce7f3", "#ede9fe", "#ffedd5"];
  const colour = {};
  sections.forEach(([start, end, label], i) => {
    const part = document.createElement("div");
    part.className = "section";
    const name = label == null ? `section ${i + 1}` : String(label);
    colour[name] = colour[name] || palette[Object.keys(colour).length % palette.length];
    Object.assign(part.style, { left: pct(start), width: `calc(${pct(end)} - ${pct(start)})`, background: colour[name] });
    part.textContent = sections.length > 1 || name ? name : "";
    part.title = `${name}: ${span(start, end)}`;
    bar.append(part);
  });
  const moment = document.createElement("div");
  moment.className = "moment";
  Object.assign(moment.style, { left: pct(hit.start), width: `calc(${pct(hit.end)} - ${pct(hit.start)})` });
  moment.title = `this moment: ${span(hit.start, hit.end)}`;
  const head = document.createElement("div");
  head.className = "playhead";
  head.hidden = true;
  bar.append(moment, head);
  const ends = document.createElement("div");
  ends.className = "ends muted";
  ends.innerHTML = "<span>0:00</span><span></span>";
  ends.lastChild.textContent = clock(total);
  box.replaceChildren(bar, ends);
  const follow = () => {
    head.hidden = audio.paused && audio.currentTime === 0;
    head.style.left = pct(hit.start + audio.currentTime);
  };
  for (const e of ["timeupdate", "play", "pause", "seeked"]) audio.addEventListener(e, follow);
}

// -- microphone --------------------------------------------------------------------------------------
async function toggleRecording() {
  const button = $("record");
  if (recorder) { recorder.stop(); return; }
  showError($("search-error"), null);
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    showError($("search-error"), `the microphone is not available: ${error.message}`);
    return;
  }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    recorder = null;
    button.textContent = "Record";
    button.setAttribute("aria-pressed", "false");
    try {
      recording = await toWav(new Blob(chunks));
      $("record-status").textContent = `recorded ${(recording.seconds).toFixed(1)} s`;
    } catch (error) {
      showError($("search-error"), `could not read the recording: ${error.message}`);
    }
  };
  recorder.start();
  button.textContent = "Stop";
  button.setAttribute("aria-pressed", "true");
  $("record-status").textContent = "recording…";
  setTimeout(() => recorder && recorder.stop(), 30000);  // the server takes at most --max-clip anyway
}

// the browser records compressed audio the server's decoder may not read: decode it here, send 16-bit WAV
async function toWav(blob) {
  const context = new AudioContext();
  const buffer = await context.decodeAudioData(await blob.arrayBuffer());
  context.close();
  const n = buffer.length, mono = new Float32Array(n);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const data = buffer.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += data[i] / buffer.numberOfChannels;
  }
  const view = new DataView(new ArrayBuffer(44 + 2 * n));
  const text = (offset, s) => [...s].forEach((ch, i) => view.setUint8(offset + i, ch.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); text(8, "WAVE"); text(12, "fmt ");
  view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, buffer.sampleRate, true); view.setUint32(28, 2 * buffer.sampleRate, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) view.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, mono[i])) * 32767, true);
  const wav = new Blob([view], { type: "audio/wav" });
  wav.seconds = n / buffer.sampleRate;
  return wav;
}

// -- map ---------------------------------------------------------------------------------------------
let maps, drawn = null;

function mapParams() {
  const params = new URLSearchParams({ method: $("map-method").value });
  if ($("map-embedder").value) params.append("embedder", $("map-embedder").value);
  if ($("map-colour").value) params.append("colour", $("map-colour").value);
  return params.toString();
}

// draws the map of the chosen embedding (again only when a choice changed)
async function drawMap(event) {
  if (event) event.preventDefault();
  if (!stats || $("view-map").hidden) return;
  const params = mapParams();
  if (drawn === params) return;
  const method = $("map-method").selectedOptions[0].textContent;
  const data = await maps.run((signal) => api(`map?${params}`, { signal }), `drawing the ${method} map…`);
  if (!data) {
    if (maps.controller === null && !$("map-error").hidden) {
      Plotly.purge($("map"));
      delete $("map").dataset.points;
      drawn = null;
    }
    return;
  }
  const p = data.points, groups = {};
  p.label.forEach((label, i) => (groups[label] = groups[label] || []).push(i));
  const text = (i) => `track ${p.track_id[i]} ${span(p.start[i], p.end[i])} ${p.label[i]}`;
  const traces = Object.entries(groups).sort().map(([label, rows]) => ({
    type: "scattergl", mode: "markers", name: label, x: rows.map((i) => p.x[i]), y: rows.map((i) => p.y[i]),
    customdata: rows, text: rows.map(text), hoverinfo: "text", marker: { size: 6 } }));
  const outliers = p.outlier.flatMap((o, i) => (o ? [i] : []));
  traces.push({ type: "scatter", mode: "markers", name: "outliers", x: outliers.map((i) => p.x[i]),
    y: outliers.map((i) => p.y[i]), customdata: outliers, text: outliers.map(text), hoverinfo: "text",
    marker: { size: 13, color: "rgba(0,0,0,0)", line: { width: 2, color: "black" } } });
  const plot = $("map"), narrow = plot.clientWidth < 600;
  await Plotly.newPlot(plot, traces, {
    height: narrow ? 420 : 560, margin: { l: 30, r: 10, t: 36, b: 30 }, hovermode: "closest",
    legend: narrow ? { orientation: "h", y: -0.12, title: { text: data.colour || "" } } : { title: { text: data.colour || "" } },
  }, { displaylogo: false, responsive: true });
  plot.dataset.points = String(p.x.length);
  plot.dataset.embedding = data.embedding;
  drawn = params;
  plot.removeAllListeners?.("plotly_click");
  plot.on("plotly_click", (event) => {
    const i = event.points[0].customdata;
    $("map-player").hidden = false;
    $("map-now").textContent = `playing track ${p.track_id[i]}, ${span(p.start[i], p.end[i])}`;
    play($("map-player"), p.audio[i]).catch((e) => showError($("map-error"), e));
  });
}

// -- stats -------------------------------------------------------------------------------------------
// a table; `stack`: on a phone each row becomes a card of "heading value" lines
function table(headers, rows, { caption, stack = false } = {}) {
  const wrap = document.createElement("div");
  wrap.className = "table-wrap";
  const t = document.createElement("table");
  if (stack) t.className = "stack";
  if (caption) t.createCaption().textContent = caption;
  if (headers) {
    const head = t.createTHead().insertRow();
    headers.forEach((h) => head.append(Object.assign(document.createElement("th"), { scope: "col", textContent: h })));
  }
  const body = t.createTBody();
  rows.forEach((r) => {
    const tr = body.insertRow();
    r.forEach((v, i) => {
      const cell = i === 0 && !headers ? document.createElement("th") : document.createElement("td");
      if (i === 0 && !headers) cell.scope = "row";
      if (headers) cell.dataset.label = headers[i];
      if (v instanceof Node) cell.append(v); else cell.textContent = v;
      if (typeof v === "number" && headers) cell.className = "num";
      tr.append(cell);
    });
  });
  wrap.append(t);
  return wrap;
}

// recall@10 of an index for people: the measured value, or why there is none
function recall(index) {
  if (index.recall != null) return index.recall.toFixed(3);
  if (/^flat$/i.test(index.factory)) return "1.000 (exact search)";
  return "not measured";
}

function hours(h) {
  return h < 1 ? `${Math.round(h * 60)} min` : `${number(h)} h`;
}

// label columns worth counting: not JSON values (sections) and not one value per track
function labelColumns() {
  return Object.entries(stats.labels).filter(([, counts]) => {
    const values = Object.keys(counts);
    return values.length && !values.some(jsonLike);
  }).map(([column]) => column);
}

function renderStats() {
  if (!stats) return;
  const out = $("stats");
  out.replaceChildren();
  const h = (text) => Object.assign(document.createElement("h2"), { textContent: text });
  const seg = stats.segmentation;
  out.append(h("Library"), table(null, [
    ["tracks", stats.tracks], ["moments", stats.segments], ["audio", hours(stats.hours)],
    ["moments are", `${number(seg.window)} s windows every ${number(seg.hop)} s`],
    ["files that failed", stats.errors], ["generation", stats.generation]]));
  const rows = stats.embeddings.flatMap((e) => (e.indexes.length ? e.indexes : [null]).map((i) => {
    const name = document.createElement("span");
    name.textContent = e.key;
    if (e.key === defaultKey() && stats.embeddings.length > 1) {
      name.append(" ", Object.assign(document.createElement("span"), { className: "badge", textContent: "default" }));
    }
    return [name, e.dim, e.n_segments, { tower: "text tower", tags: "tags" }[e.text] || "audio only",
            i ? `${i.name} (${i.factory})` : "none: exact search", i ? recall(i) : "1.000 (exact search)",
            i && i.bytes_per_segment != null ? Math.round(i.bytes_per_segment) : "–"];
  }));
  out.append(h("Embeddings and indexes"),
    table(["embedding", "dimensions", "moments", "text queries", "index", "recall@10", "bytes per moment"], rows,
          { stack: true }));
  const labels = document.createElement("div");
  labels.className = "labels";
  for (const column of labelColumns()) {
    const counts = Object.entries(stats.labels[column]);
    const shown = counts.slice(0, 12);
    if (counts.length > shown.length) shown.push([`… ${counts.length - shown.length} more`, ""]);
    labels.append(table([column, "tracks"], shown));
  }
  if (labels.childElementCount) out.append(h("Tracks per label"), labels);
}

// -- start -------------------------------------------------------------------------------------------
function options(select, values, labelOf = (v) => v) {
  select.replaceChildren(...values.map((v) => Object.assign(document.createElement("option"), { value: v, textContent: labelOf(v) })));
}

function listen() {
  for (const view of ["search", "map", "stats"]) $(`tab-${view}`).addEventListener("click", () => showView(view));
  document.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", showMode));
  $("as-hum").addEventListener("change", chooseEmbeddings);
  $("embedder").addEventListener("change", () => { $("embedder").dataset.chosen = $("embedder").value; chooseEmbeddings(); });
  $("alpha").addEventListener("input", () => ($("alpha-value").textContent = Number($("alpha").value).toFixed(2)));
  $("diversity").addEventListener("input", () => ($("diversity-value").textContent = Number($("diversity").value) ? $("diversity").value : "off"));
  $("at").addEventListener("input", () => ($("at-value").textContent = clock(Number($("at").value))));
  $("record").addEventListener("click", toggleRecording);
  $("search-form").addEventListener("submit", runSearch);
  $("map-form").addEventListener("submit", drawMap);
  for (const id of ["map-embedder", "map-colour", "map-method"]) $(id).addEventListener("change", () => drawMap());
  searches = new Latest($("search-status"), $("search-error"), "searching…");
  maps = new Latest($("map-status"), $("map-error"), "drawing the map…");
}

async function start() {
  listen();
  showMode();
  try {
    const [health, tracks, info] = await Promise.all([api("health"), api("tracks?limit=1000"), api("stats")]);
    stats = info;
    $("library").textContent = `${health.library} · ${stats.tracks} tracks · ${stats.segments} moments`;
    tracks.tracks.forEach((t) => (durations[t.track_id] = t.duration));
    options($("track"), tracks.tracks.map((t) => t.track_id), (id) => `${id}: ${tracks.tracks.find((t) => t.track_id === id).file}`);
    const setRange = () => ($("at").max = String(Math.max(0, (durations[$("track").value] || 0) - 0.5)));
    $("track").addEventListener("change", setRange);
    setRange();
    fillEmbeddings($("map-embedder"), "audio");
    $("map-embedder").addEventListener("change", () => ($("map-embedder").dataset.chosen = $("map-embedder").value));
    const columns = labelColumns();
    options($("filter-column"), ["", ...columns], (c) => c || "none");
    options($("map-colour"), ["", ...columns], (c) => c || "nothing");
    if (columns.length) $("map-colour").value = columns[0];
    $("filter-column").addEventListener("change", () => {
      const column = $("filter-column").value;
      options($("filter-value"), column ? Object.keys(stats.labels[column]) : []);
      $("filter-value").disabled = !column;
    });
    chooseEmbeddings();
  } catch (error) {
    showError($("error"), `the library could not be loaded: ${error.message}`);
  }
  document.body.dataset.ready = "true";
}

start();
