// The listening page of `audiorag serve`: every call goes to the same REST API documented at /docs.
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token") || sessionStorage.getItem("audiorag-token");
if (token) sessionStorage.setItem("audiorag-token", token);
const auth = () => (token ? { Authorization: `Bearer ${token}` } : {});
let stats = null, recording = null, recorder = null;

// -- API -------------------------------------------------------------------------------------------
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...auth(), ...(options.headers || {}) } });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const what = body && body.detail ? body.detail : response.statusText;
    throw new Error(`${response.status} ${body && body.error ? body.error : ""}: ${what}`);
  }
  return body;
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
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
}

function showMode() {
  const mode = document.querySelector("input[name=mode]:checked").value;
  const visible = new Set({ file: ["file"], record: ["record"], text: ["text"], hybrid: ["text", "hybrid", "file"],
                            moment: ["moment"] }[mode]);
  document.querySelectorAll("[class^=for-], [class*=' for-']").forEach((el) => {
    const kinds = [...el.classList].filter((c) => c.startsWith("for-")).map((c) => c.slice(4));
    el.hidden = !kinds.some((k) => visible.has(k)) && !(mode === "hybrid" && kinds.includes("moment"));
  });
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

function span(form) {
  if ($("start").value !== "") form.append("start", $("start").value);
  if ($("end").value !== "") form.append("end", $("end").value);
}

async function runSearch(event) {
  event.preventDefault();
  showError(null);
  const mode = document.querySelector("input[name=mode]:checked").value;
  const file = $("file").files[0];
  let result;
  try {
    if (mode === "file" || mode === "record") {
      const form = new FormData();
      const blob = mode === "file" ? file : recording;
      if (!blob) throw new Error(mode === "file" ? "choose an audio file first" : "record something first");
      form.append("file", blob, mode === "file" ? file.name : "recording.wav");
      if (mode === "file") span(form);
      const hum = mode === "record" && $("as-hum").checked;
      result = await api(hum ? "search/hum" : "search/audio",
                         { method: "POST", body: commonOptions(form, { rerank: !hum }) });
    } else if (mode === "text") {
      const form = commonOptions(new FormData(), { rerank: false });
      const params = Object.fromEntries(form), where = form.getAll("where");
      result = await api("search/text", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ...params, k: Number(params.k), where, text: $("text").value }) });
    } else if (mode === "hybrid") {
      const form = commonOptions(new FormData());
      form.append("text", $("text").value);
      form.append("alpha", $("alpha").value);
      if (file) { form.append("file", file, file.name); span(form); }
      else { form.append("track", $("track").value); form.append("at", $("at").value); }
      result = await api("search/hybrid", { method: "POST", body: form });
    } else {
      const params = new URLSearchParams(commonOptions(new FormData()));
      params.append("track", $("track").value);
      params.append("at", $("at").value);
      result = await api(`search/moment?${params}`);
    }
  } catch (error) {
    showError(error);
    return;
  }
  renderHits(result);
}

function renderHits(result) {
  const list = $("hits");
  list.replaceChildren();
  $("summary").textContent = `${result.hits.length} hits in ${result.took_ms.toFixed(1)} ms (${result.embedding})`;
  for (const hit of result.hits) {
    const item = document.createElement("li");
    item.className = "hit";
    item.dataset.track = hit.track_id;
    item.dataset.start = hit.start;
    item.dataset.end = hit.end;
    const title = document.createElement("div");
    title.innerHTML = `<b></b> <span class="when"></span> <span class="score"></span>`;
    title.querySelector("b").textContent = hit.file || `track ${hit.track_id}`;
    title.querySelector(".when").textContent = `${hit.start.toFixed(1)}–${hit.end.toFixed(1)} s`;
    title.querySelector(".score").textContent = `score ${hit.score.toFixed(3)}`;
    const meta = document.createElement("div");
    meta.className = "meta";
    const plain = Object.entries(hit.metadata).filter(([k, v]) => !k.startsWith("contrib:") && v !== null && typeof v !== "object");
    meta.textContent = plain.map(([k, v]) => `${k}: ${typeof v === "number" ? +v.toFixed(3) : v}`).join(" · ");
    item.append(title, meta);
    const factors = Object.entries(hit.metadata).filter(([k]) => k.startsWith("contrib:"));
    if (factors.length) {
      const why = document.createElement("div");
      why.className = "factors";
      why.textContent = "score = " + factors.map(([k, v]) => `${k.slice(8)} ${v.toFixed(3)}`).join(" + ");
      item.append(why);
    }
    if (hit.tags) {
      const tags = document.createElement("div");
      tags.className = "meta";
      tags.textContent = "tags: " + Object.entries(hit.tags).map(([t, p]) => `${t} ${p.toFixed(2)}`).join(", ");
      item.append(tags);
    }
    const button = document.createElement("button");
    button.type = "button";
    button.className = "play";
    button.textContent = "Play";
    button.setAttribute("aria-label", `play hit ${hit.rank}: ${hit.start.toFixed(1)} to ${hit.end.toFixed(1)} s`);
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "none";
    button.addEventListener("click", () => play(audio, hit.audio).catch(showError));
    item.append(button, audio);
    list.append(item);
  }
}

// -- microphone --------------------------------------------------------------------------------------
async function toggleRecording() {
  const button = $("record");
  if (recorder) { recorder.stop(); return; }
  showError(null);
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    showError(`the microphone is not available: ${error.message}`);
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
      showError(`could not read the recording: ${error.message}`);
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
async function drawMap(event) {
  if (event) event.preventDefault();
  showError(null);
  const params = new URLSearchParams({ method: $("map-method").value });
  if ($("map-embedder").value) params.append("embedder", $("map-embedder").value);
  if ($("map-colour").value) params.append("colour", $("map-colour").value);
  let data;
  try { data = await api(`map?${params}`); } catch (error) { showError(error); return; }
  const p = data.points, groups = {};
  p.label.forEach((label, i) => (groups[label] = groups[label] || []).push(i));
  const text = (i) => `track ${p.track_id[i]} ${p.start[i].toFixed(1)}–${p.end[i].toFixed(1)} s ${p.label[i]}`;
  const traces = Object.entries(groups).sort().map(([label, rows]) => ({
    type: "scattergl", mode: "markers", name: label, x: rows.map((i) => p.x[i]), y: rows.map((i) => p.y[i]),
    customdata: rows, text: rows.map(text), hoverinfo: "text", marker: { size: 6 } }));
  const outliers = p.outlier.flatMap((o, i) => (o ? [i] : []));
  traces.push({ type: "scatter", mode: "markers", name: "outliers", x: outliers.map((i) => p.x[i]),
    y: outliers.map((i) => p.y[i]), customdata: outliers, text: outliers.map(text), hoverinfo: "text",
    marker: { size: 13, color: "rgba(0,0,0,0)", line: { width: 2, color: "black" } } });
  const plot = $("map");
  await Plotly.newPlot(plot, traces, { height: 560, margin: { l: 30, r: 10, t: 10, b: 30 }, hovermode: "closest",
    legend: { title: { text: data.colour || "" } } }, { displaylogo: false, responsive: true });
  plot.dataset.points = String(p.x.length);
  plot.on("plotly_click", (event) => {
    const i = event.points[0].customdata;
    $("map-now").textContent = `playing track ${p.track_id[i]}, ${p.start[i].toFixed(1)}–${p.end[i].toFixed(1)} s`;
    play($("map-player"), p.audio[i]).catch(showError);
  });
}

// -- stats -------------------------------------------------------------------------------------------
function table(headers, rows) {
  const t = document.createElement("table");
  const head = t.createTHead().insertRow();
  headers.forEach((h) => (head.insertCell().outerHTML = `<th scope="col">${h}</th>`));
  const body = t.createTBody();
  rows.forEach((r) => { const tr = body.insertRow(); r.forEach((v) => (tr.insertCell().textContent = v)); });
  return t;
}

function renderStats() {
  if (!stats) return;
  const out = $("stats");
  out.replaceChildren();
  const h = (text) => Object.assign(document.createElement("h2"), { textContent: text });
  out.append(h("Library"), table(["tracks", "segments", "hours", "window", "hop", "errors"],
    [[stats.tracks, stats.segments, stats.hours.toFixed(2), stats.segmentation.window, stats.segmentation.hop,
      stats.errors]]));
  out.append(h("Embeddings and indexes"), table(["embedding", "dim", "text", "index", "factory", "recall@10", "bytes/segment"],
    stats.embeddings.flatMap((e) => (e.indexes.length ? e.indexes : [{}]).map((i) => [e.key, e.dim, e.text || "–",
      i.name || "–", i.factory || "–", i.recall == null ? "–" : i.recall.toFixed(3),
      i.bytes_per_segment == null ? "–" : Math.round(i.bytes_per_segment)]))));
  for (const [column, counts] of Object.entries(stats.labels)) {
    out.append(h(`Tracks per ${column}`), table([column, "tracks"], Object.entries(counts)));
  }
}

// -- start -------------------------------------------------------------------------------------------
function options(select, values, labelOf = (v) => v) {
  select.replaceChildren(...values.map((v) => Object.assign(document.createElement("option"), { value: v, textContent: labelOf(v) })));
}

async function start() {
  for (const view of ["search", "map", "stats"]) $(`tab-${view}`).addEventListener("click", () => showView(view));
  document.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", showMode));
  $("alpha").addEventListener("input", () => ($("alpha-value").textContent = Number($("alpha").value).toFixed(2)));
  $("diversity").addEventListener("input", () => ($("diversity-value").textContent = Number($("diversity").value) ? $("diversity").value : "off"));
  $("at").addEventListener("input", () => ($("at-value").textContent = `${Number($("at").value).toFixed(1)} s`));
  $("record").addEventListener("click", toggleRecording);
  $("search-form").addEventListener("submit", runSearch);
  $("map-form").addEventListener("submit", drawMap);
  showMode();
  try {
    const [health, tracks] = await Promise.all([api("health"), api("tracks?limit=1000")]);
    stats = await api("stats");
    $("library").textContent = `${health.library} · generation ${health.generation} · ${stats.tracks} tracks`;
    const durations = Object.fromEntries(tracks.tracks.map((t) => [t.track_id, t.duration]));
    options($("track"), tracks.tracks.map((t) => t.track_id), (id) => `${id}: ${tracks.tracks.find((t) => t.track_id === id).file}`);
    const setRange = () => ($("at").max = String(Math.max(0, (durations[$("track").value] || 0) - 0.5)));
    $("track").addEventListener("change", setRange);
    setRange();
    const keys = stats.embeddings.map((e) => e.key);
    options($("embedder"), ["", ...keys], (k) => k || "default");
    options($("map-embedder"), keys);
    const columns = Object.keys(stats.labels);
    options($("filter-column"), ["", ...columns], (c) => c || "none");
    options($("map-colour"), columns);
    $("filter-column").addEventListener("change", () => options($("filter-value"),
      $("filter-column").value ? Object.keys(stats.labels[$("filter-column").value]) : []));
  } catch (error) {
    showError(error);
  }
  document.body.dataset.ready = "true";
}

start();
