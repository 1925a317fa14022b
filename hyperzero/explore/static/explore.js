// hyperzero explore: sliders -> POST /api/rollout -> streamed frames, rewards and returns.
// No framework and nothing from the internet: the page must work offline on 127.0.0.1.
"use strict";

const $ = (id) => document.getElementById(id);
const svgNS = "http://www.w3.org/2000/svg";
const COLORS = ["var(--c0)", "var(--c1)"];

const state = {
  info: null,
  client: (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)),
  generation: 0,        // bumped per request; events of older requests are ignored
  controller: null,     // AbortController of the request in flight (superseded requests are aborted)
  clip: null,           // the clip on screen: {start, panels: [{frames, rewards, done}], complete}
  playing: true,
  playStart: 0,         // performance.now() at frame 0 of the playback loop
  shownIndex: -1,
  features: {},         // name -> {range, number, track}
};

function fmt(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return "-";
  return Number(x).toFixed(digits);
}

function setState(s) { document.body.dataset.state = s; }

function showMessage(text) {
  const box = $("message");
  box.textContent = text || "";
  box.hidden = !text;
}

// ---------------------------------------------------------------- setup
async function init() {
  let resp;
  try {
    resp = await fetch("/api/run");
  } catch (e) {
    showMessage(`cannot reach the explore server: ${e}`);
    setState("error");
    return;
  }
  const info = await resp.json();
  state.info = info;
  $("run-name").textContent = info.run;
  $("run-facts").textContent = `${info.family} · ${info.tasks.length} tasks varying ${info.context_names.join(", ")}` +
    ` · γ = ${info.gamma} · ${info.defaults.episode_steps}-step episodes` +
    (Object.keys(info.fixed_context).length ? ` · fixed: ${Object.entries(info.fixed_context).map(([k, v]) => `${k}=${v}`).join(", ")}` : "");
  for (const f of info.features) buildFeature(f, info.defaults.context[f.name]);
  const method = $("method"), compare = $("compare");
  for (const m of info.methods) {
    method.add(new Option(m.name + (m.meta ? " (zero-shot)" : ""), m.name));
    compare.add(new Option(m.name + (m.meta ? " (zero-shot)" : ""), m.name));
  }
  method.value = info.defaults.method;
  fillSeeds($("seed"), info.defaults.method, info.defaults.seed);
  $("episode-seed").value = info.defaults.episode_seed;
  $("clip-steps").value = info.defaults.clip_steps;
  $("clip-steps").max = info.defaults.max_clip_steps;
  method.addEventListener("change", () => { fillSeeds($("seed"), method.value); markTracks(); request(); });
  $("seed").addEventListener("change", () => { markTracks(); request(); });
  compare.addEventListener("change", () => {
    $("compare-seed-label").hidden = !compare.value;
    if (compare.value) fillSeeds($("compare-seed"), compare.value, Number($("seed").value));
    request();
  });
  $("compare-seed").addEventListener("change", () => request());
  $("episode-seed").addEventListener("change", () => request());
  $("clip-steps").addEventListener("change", () => request());
  $("speed").addEventListener("change", () => restartPlayback());
  $("go").addEventListener("click", () => request());
  markTracks();
  requestAnimationFrame(tick);
  request();
}

function methodInfo(name) { return state.info.methods.find((m) => m.name === name); }

function fillSeeds(select, method, preferred) {
  const seeds = methodInfo(method).seeds;
  select.replaceChildren(...seeds.map((s) => new Option(String(s), String(s))));
  select.value = String(seeds.includes(preferred) ? preferred : seeds[0]);
}

function buildFeature(f, initial) {
  const box = document.createElement("div");
  box.className = "feature";
  box.dataset.feature = f.name;
  const head = document.createElement("div");
  head.className = "head";
  const label = document.createElement("label");
  label.innerHTML = `<span class="name"></span> <span class="muted"></span>`;
  label.querySelector(".name").textContent = f.name;
  label.querySelector(".muted").textContent = `(${f.unit}, ${f.kind})`;
  const number = document.createElement("input");
  number.type = "number";
  number.step = "any";
  number.id = `value-${f.name}`;
  number.setAttribute("aria-label", `${f.name} value`);
  label.htmlFor = number.id;
  head.append(label, number);
  const range = document.createElement("input");
  range.type = "range";
  range.id = `slider-${f.name}`;
  range.min = f.slider[0];
  range.max = f.slider[1];
  range.step = f.step;
  range.setAttribute("aria-label", `${f.name} slider`);
  const track = document.createElementNS(svgNS, "svg");
  track.setAttribute("viewBox", "0 0 400 26");
  track.setAttribute("preserveAspectRatio", "none");
  const doc = document.createElement("div");
  doc.className = "doc muted";
  doc.textContent = `${f.doc}; physical limits [${f.limits[0]}, ${f.limits[1]}], nominal range [${f.nominal[0]}, ${f.nominal[1]}]`;
  box.append(head, range, track, doc);
  $("features").append(box);
  number.value = initial;
  range.value = initial;
  // dragging updates the number; releasing the slider (change) asks for a clip
  range.addEventListener("input", () => { number.value = range.value; updateContextStatus(); });
  range.addEventListener("change", () => request());
  number.addEventListener("change", () => {
    const v = Number(number.value);
    if (number.value !== "" && Number.isFinite(v)) range.value = v;
    updateContextStatus();
    request();
  });
  state.features[f.name] = { f, range, number, track };
}

function currentSplit() {
  const m = methodInfo($("method").value);
  return m ? m.splits[$("seed").value] : null;
}

function trainRange(name) {
  const info = state.info, split = currentSplit();
  const i = info.context_names.indexOf(name);
  const train = new Set(split ? split.train : []);
  let values = info.tasks.filter((t) => train.has(t.task_id)).map((t) => t.values[i]);
  if (!values.length) values = info.tasks.map((t) => t.values[i]);
  return [Math.min(...values), Math.max(...values)];
}

// the strip under each slider: training range (green band), extrapolation (orange), task ticks
function markTracks() {
  const info = state.info, split = currentSplit();
  const train = new Set(split ? split.train : []);
  for (const [name, { f, track }] of Object.entries(state.features)) {
    const [lo, hi] = f.slider;
    const x = (v) => 400 * (v - lo) / (hi - lo);
    const [tlo, thi] = trainRange(name);
    const i = info.context_names.indexOf(name);
    const parts = [];
    parts.push(`<rect x="0" y="4" width="${Math.max(0, x(tlo))}" height="10" fill="var(--extra)"><title>extrapolation: below the training tasks</title></rect>`);
    parts.push(`<rect x="${x(thi)}" y="4" width="${Math.max(0, 400 - x(thi))}" height="10" fill="var(--extra)"><title>extrapolation: above the training tasks</title></rect>`);
    parts.push(`<rect x="${x(tlo)}" y="4" width="${Math.max(1, x(thi) - x(tlo))}" height="10" fill="var(--band)"><title>range of the training tasks [${tlo}, ${thi}]</title></rect>`);
    for (const t of info.tasks) {
      const v = t.values[i], isTrain = train.has(t.task_id);
      const cls = isTrain ? "train" : "heldout";
      parts.push(`<g class="tick ${cls}"><title>${t.task_id} (${isTrain ? "training task" : "held out"})</title>` +
        (isTrain ? `<rect x="${x(v) - 1.5}" y="2" width="3" height="14" fill="var(--train)"/>`
                 : `<rect x="${x(v) - 2}" y="3" width="4" height="12" fill="#fff" stroke="var(--heldout)" stroke-width="1.5"/>`) + `</g>`);
    }
    parts.push(`<text x="0" y="25" font-size="9" fill="#666">${lo}</text><text x="400" y="25" font-size="9" fill="#666" text-anchor="end">${hi}</text>`);
    track.innerHTML = parts.join("");
  }
  updateContextStatus();
}

function readContext() {
  const ctx = {};
  for (const [name, { number }] of Object.entries(state.features)) ctx[name] = number.value === "" ? null : Number(number.value);
  return ctx;
}

function updateContextStatus() {
  const out = [];
  for (const [name, { f, number }] of Object.entries(state.features)) {
    const v = Number(number.value);
    if (number.value === "" || !Number.isFinite(v)) continue;
    const [tlo, thi] = trainRange(name);
    const inside = v >= tlo && v <= thi;
    const beyondNominal = v < f.nominal[0] || v > f.nominal[1];
    out.push(`<span class="badge ${inside ? "inside" : "extra"}">${name} = ${v}: ${inside ? "within the training tasks" : "extrapolation beyond the training tasks"}${beyondNominal ? ", beyond the nominal range" : ""}</span>`);
  }
  $("context-status").innerHTML = out.join(" ");
}

// ---------------------------------------------------------------- panels
function makePanels(n) {
  const box = $("panels");
  while (box.children.length > n) box.lastElementChild.remove();
  while (box.children.length < n) {
    const i = box.children.length;
    const node = $("panel-template").content.firstElementChild.cloneNode(true);
    node.id = `panel-${i}`;
    node.querySelector("canvas").id = `canvas-${i}`;
    node.querySelector(".return").id = `return-${i}`;
    node.querySelector(".scrub").id = `scrub-${i}`;
    node.querySelector(".frame-label").id = `frame-label-${i}`;
    node.querySelector(".play").addEventListener("click", () => togglePlay());
    node.querySelector(".scrub").addEventListener("input", (e) => { state.playing = false; syncPlayButtons(); show(Number(e.target.value)); });
    box.append(node);
  }
  return [...box.children];
}

function panelNode(i) { return $(`panel-${i}`); }

function togglePlay() {
  state.playing = !state.playing;
  if (state.playing) restartPlayback(state.shownIndex);
  syncPlayButtons();
}

function syncPlayButtons() {
  for (const b of document.querySelectorAll(".panel .play")) b.textContent = state.playing ? "pause" : "play";
}

function restartPlayback(fromIndex = 0) {
  const clip = state.clip;
  if (!clip) return;
  state.playStart = performance.now() - (fromIndex / playbackFps()) * 1000;
}

function playbackFps() {
  const clip = state.clip;
  return (clip ? clip.start.playback_fps : 30) * Number($("speed").value);
}

function show(index) {
  const clip = state.clip;
  if (!clip) return;
  state.shownIndex = index;
  clip.panels.forEach((p, i) => {
    const frame = p.frames[Math.min(index, p.frames.length - 1)];
    if (!frame) return;
    const canvas = $(`canvas-${i}`);
    if (canvas.width !== frame.naturalWidth) { canvas.width = frame.naturalWidth; canvas.height = frame.naturalHeight; }
    canvas.getContext("2d").drawImage(frame, 0, 0);
    const step = Math.min(index, p.frames.length - 1) * clip.start.frame_every;
    $(`scrub-${i}`).value = Math.min(index, p.frames.length - 1);
    $(`frame-label-${i}`).textContent = `step ${step} / ${clip.start.clip_steps}`;
  });
  drawPlayhead(Math.min(index, clip.panels[0].frames.length - 1) * clip.start.frame_every);
}

function tick(now) {
  const clip = state.clip;
  if (clip && state.playing && clip.panels[0].frames.length) {
    const available = Math.min(...clip.panels.map((p) => p.frames.length));
    let index = Math.floor((now - state.playStart) / 1000 * playbackFps());
    if (clip.complete) index = index % clip.start.frames;
    else if (index >= available) { index = available - 1; state.playStart = now - (index / playbackFps()) * 1000; }
    if (index !== state.shownIndex) show(index);
  }
  requestAnimationFrame(tick);
}

// ---------------------------------------------------------------- reward plot
function drawPlot() {
  const clip = state.clip, svg = $("plot");
  if (!clip) return;
  const W = 760, H = 200, L = 44, R = 8, T = 10, B = 24;
  const steps = clip.start.episode_steps;
  const all = clip.panels.flatMap((p) => p.rewards);
  const ymin = Math.min(0, ...all), ymax = Math.max(1e-6, ...all);
  const x = (t) => L + (W - L - R) * t / steps;
  const y = (r) => H - B - (H - T - B) * (r - ymin) / (ymax - ymin);
  const parts = [];
  parts.push(`<rect x="${x(0)}" y="${T}" width="${x(clip.start.clip_steps) - x(0)}" height="${H - T - B}" fill="#eceff1"><title>the clip</title></rect>`);
  parts.push(`<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#999"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#999"/>`);
  parts.push(`<text x="${L - 4}" y="${y(ymax) + 4}" text-anchor="end">${fmt(ymax, 2)}</text><text x="${L - 4}" y="${y(ymin)}" text-anchor="end">${fmt(ymin, 2)}</text>`);
  for (const t of [0, clip.start.clip_steps]) parts.push(`<text x="${x(t)}" y="${H - 8}" text-anchor="middle">${t}</text>`);
  parts.push(`<text x="${W - R}" y="${H - 8}" text-anchor="end">${steps} (control step)</text>`);
  clip.panels.forEach((p, i) => {
    if (!p.rewards.length) return;
    const pts = p.rewards.map((r, t) => `${x(t + 1).toFixed(1)},${y(r).toFixed(1)}`).join(" ");
    parts.push(`<polyline id="curve-${i}" class="curve" fill="none" stroke="${COLORS[i]}" stroke-width="1.2" points="${pts}"/>`);
  });
  parts.push(`<line id="playhead" x1="${x(0)}" x2="${x(0)}" y1="${T}" y2="${H - B}" stroke="#555" stroke-dasharray="3 2"/>`);
  svg.innerHTML = parts.join("");
  state.plotX = x;
  $("plot-note").textContent = `(shaded: the ${clip.start.clip_steps} steps drawn; the episode runs ${steps} steps)`;
}

let plotPending = false;
function schedulePlot() {  // at most one redraw per display frame while frames stream in
  if (plotPending) return;
  plotPending = true;
  requestAnimationFrame(() => { plotPending = false; drawPlot(); });
}

function drawPlayhead(step) {
  const line = $("playhead");
  if (line && state.plotX) { const px = state.plotX(step); line.setAttribute("x1", px); line.setAttribute("x2", px); }
}

// ---------------------------------------------------------------- requests
function requestBody() {
  const compare = $("compare").value;
  const clipSteps = Number($("clip-steps").value);
  return {
    client: state.client,
    context: readContext(),
    method: $("method").value,
    seed: Number($("seed").value),
    compare: compare || null,
    compare_seed: compare ? Number($("compare-seed").value) : null,
    episode_seed: $("episode-seed").value === "" ? null : Number($("episode-seed").value),
    clip_steps: Number.isFinite(clipSteps) && $("clip-steps").value !== "" ? clipSteps : null,
  };
}

async function request() {
  if (!state.info) return;
  const generation = ++state.generation;
  if (state.controller) state.controller.abort();   // the server also stops it: a newer clip supersedes it
  const controller = new AbortController();
  state.controller = controller;
  const t0 = performance.now();
  const timing = { t0, first: null, clip: null };
  setState("loading");
  showMessage("");
  for (const { number } of Object.values(state.features)) number.removeAttribute("aria-invalid");
  let resp;
  try {
    resp = await fetch("/api/rollout", { method: "POST", headers: { "Content-Type": "application/json" },
                                         body: JSON.stringify(requestBody()), signal: controller.signal });
  } catch (e) {
    if (generation === state.generation) { showMessage(`request failed: ${e}`); setState("error"); }
    return;
  }
  if (!resp.ok) {
    let text = `${resp.status} ${resp.statusText}`;
    try { text = (await resp.json()).error || text; } catch (e) { /* not JSON */ }
    if (generation !== state.generation) return;
    showMessage(text);
    for (const [name, { number }] of Object.entries(state.features)) if (text.includes(`'${name}'`)) number.setAttribute("aria-invalid", "true");
    setState("error");
    return;
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (generation !== state.generation) { controller.abort(); return; }
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 1);
        if (line) await handle(JSON.parse(line), generation, timing);
        if (generation !== state.generation) return;
      }
    }
  } catch (e) {
    if (generation === state.generation && e.name !== "AbortError") { showMessage(`stream failed: ${e}`); setState("error"); }
  }
}

async function handle(event, generation, timing) {
  if (event.type === "start") {
    const n = event.panels.length;
    const nodes = makePanels(n);
    state.clip = { start: event, complete: false, panels: event.panels.map(() => ({ frames: [], rewards: [] })) };
    event.panels.forEach((p, i) => {
      const node = nodes[i];
      node.querySelector(".panel-title").textContent = `${p.method} · split seed ${p.seed}` + (p.meta ? " · zero-shot (no adaptation)" : "");
      node.querySelector(".scrub").max = event.frames - 1;
      for (const sel of [".return", ".clip-return", ".discounted"]) node.querySelector(sel).textContent = "…";
      for (const el of node.querySelectorAll(".q-row")) el.hidden = !p.has_q;
      node.querySelector(".q-hat").textContent = p.has_q ? fmt(p.q_hat, 2) : "-";
      const task = event.task;
      for (const el of node.querySelectorAll(".expert-row, .role-row")) el.hidden = !task;
      if (task) {
        const e = task.expert;
        node.querySelector(".expert").textContent = (e ? `${fmt(e.return_mean)} ± ${fmt(e.return_std)}` +
          (e.episode_steps ? ` over ${e.episode_steps}-step episodes` : "") + ` (${e.source})` : "not recorded") +
          (task.dataset_return !== null ? `; on the dataset's ${state.info.episode_length}-step episodes: ${fmt(task.dataset_return)}` : "");
        const role = task.roles[i];
        node.querySelector(".role").textContent = `${task.task_id}: ` +
          ({ train: "a training task", val: "a validation task (held out from training)", test: "a test task (held out)", unused: "not in this split" })[role];
      }
      const overlay = node.querySelector(".overlay");
      overlay.textContent = "rendering…";
      overlay.hidden = false;
      node.querySelector(".download").hidden = true;
    });
    updateContextStatus();
    if (event.task) $("context-status").insertAdjacentHTML("beforeend", ` <span class="badge task">dataset task ${event.task.task_id}</span>`);
    state.shownIndex = -1;
    restartPlayback(0);
    drawPlot();
    setState("streaming");
  } else if (event.type === "frame") {
    const img = new Image();
    img.src = "data:image/jpeg;base64," + event.jpeg;
    await img.decode();
    if (generation !== state.generation) return;
    const panel = state.clip.panels[event.panel];
    panel.frames.push(img);
    panel.rewards.push(...event.rewards);
    if (event.panel === state.clip.panels.length - 1) schedulePlot();
    if (timing.first === null && event.panel === 0) {
      show(0);
      timing.first = performance.now();
      restartPlayback(0);
      for (const o of document.querySelectorAll(".overlay")) o.hidden = true;
      showTiming(timing);
    }
  } else if (event.type === "clip") {
    timing.clip = performance.now();
    state.clip.complete = true;
    event.clip_returns.forEach((r, i) => {
      const node = panelNode(i);
      node.querySelector(".clip-return").textContent = `${fmt(r)} (first ${state.clip.start.clip_steps} steps)`;
      const link = node.querySelector(".download");
      link.href = `/api/clips/${state.clip.start.clip}/${i}.mp4`;
      link.hidden = false;
    });
    showTiming(timing);
  } else if (event.type === "done") {
    event.panels.forEach((p, i) => {
      state.clip.panels[i].rewards.push(...p.rewards);
      const node = panelNode(i);
      node.querySelector(".return").textContent = `${fmt(p.episode_return)} (${p.steps} steps)`;
      node.querySelector(".discounted").textContent = `${fmt(p.discounted_return, 2)} (realised, γ = ${state.clip.start.gamma})`;
    });
    drawPlot();
    timing.done = performance.now();
    showTiming(timing);
    document.body.dataset.clips = String(Number(document.body.dataset.clips || 0) + 1);
    setState("done");
  } else if (event.type === "superseded") {
    // a newer request of this page took over; nothing to show
  } else if (event.type === "error") {
    showMessage(event.message);
    setState("error");
  }
}

function showTiming(t) {
  const s = (x) => x === null || x === undefined ? "…" : ((x - t.t0) / 1000).toFixed(2) + " s";
  const el = $("timing");
  el.textContent = `change → first frame ${s(t.first)} · full clip ${s(t.clip)} · whole episode ${s(t.done)}`;
  el.dataset.firstFrameS = t.first === null ? "" : ((t.first - t.t0) / 1000).toFixed(3);
  el.dataset.clipS = t.clip === null || t.clip === undefined ? "" : ((t.clip - t.t0) / 1000).toFixed(3);
}

init();
