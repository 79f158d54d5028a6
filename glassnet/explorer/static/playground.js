/* glassnet explorer — Playground: build a small CNN, watch its shapes, parameters and MACs, train it. */
"use strict";

const P_DEFAULT = () => [
  { type: "conv", channels: 8, kernel: 3, stride: 1, padding: 1, relu: true },
  { type: "pool", pool: "max", kernel: 2, stride: 2 },
  { type: "conv", channels: 16, kernel: 3, stride: 1, padding: 1, relu: true },
  { type: "pool", pool: "max", kernel: 2, stride: 2 },
  { type: "dense", units: 32, relu: true },
];
const P_NEW = {
  conv: () => ({ type: "conv", channels: 8, kernel: 3, stride: 1, padding: 1, relu: true }),
  pool: () => ({ type: "pool", pool: "max", kernel: 2, stride: 2 }),
  dropout: () => ({ type: "dropout", p: 0.25 }),
  dense: () => ({ type: "dense", units: 32, relu: true }),
};
const P_FIELDS = {
  conv: [["channels", "channels"], ["kernel", "kernel"], ["stride", "stride"], ["padding", "padding"], ["relu", "ReLU"]],
  pool: [["pool", "kind"], ["kernel", "kernel"], ["stride", "stride"]],
  dropout: [["p", "p"]],
  dense: [["units", "units"], ["relu", "ReLU"]],
};
const P_TITLES = { conv: "convolution", pool: "pooling", dropout: "dropout", dense: "dense" };
const PG = { started: false, layers: P_DEFAULT(), doc: null, error: null, job: null, poll: null, version: null,
  choices: [], watch: 0, watchStep: null };

/** "C×H×W" of the data chosen (from /api/playground/data). */
function pInputShape() {
  const d = $("p-data").value;
  const c = PG.choices.find((x) => x.name === d);
  return c && c.input_shape ? c.input_shape.join("×") : (d === "shapes-rgb" ? "3×28×28" : "1×28×28");
}

async function pLoadChoices() {
  PG.choices = await api("/api/playground/data");
  const sel = $("p-data");
  const prev = sel.value;
  sel.innerHTML = "";
  for (const c of PG.choices) sel.append(el("option", { value: c.name, text: c.title, disabled: !c.available, title: c.message || "" }));
  sel.value = PG.choices.some((c) => c.name === prev && c.available) ? prev : "shapes";
}

/** The first test images of the chosen data, to pick the one whose feature maps are watched. */
async function pLoadWatch() {
  const box = $("p-watch-thumbs");
  let d;
  try {
    d = await api(`/api/playground/testimages?data=${encodeURIComponent($("p-data").value)}&limit=12`);
  } catch (e) {
    box.innerHTML = "";
    box.append(el("div", { class: "small muted", text: e.message }));
    return;
  }
  box.innerHTML = "";
  if (PG.watch >= d.count) PG.watch = 0;
  for (const it of d.items) {
    const b = el("button", { title: `#${it.index}: ${it.class}`, "data-index": it.index, class: PG.watch === it.index ? "on" : null },
      el("img", { src: it.png, alt: it.class }));
    b.addEventListener("click", () => {
      PG.watch = it.index;
      for (const o of box.querySelectorAll("button")) o.classList.toggle("on", o === b);
      $("p-watch-label").textContent = `— #${it.index} (${it.class})`;
    });
    box.append(b);
  }
  const cur = d.items.find((it) => it.index === PG.watch);
  $("p-watch-label").textContent = cur ? `— #${cur.index} (${cur.class})` : "";
}

function pSpec() {
  return { data: $("p-data").value, layers: PG.layers.map((L) => Object.assign({}, L)) };
}

function renderLayerEditor() {
  const box = $("p-layers");
  box.innerHTML = "";
  const bad = PG.error ? PG.error.layer : null;
  PG.layers.forEach((L, i) => {
    const row = el("div", { class: `play-layer ${L.type}` + (bad === i ? " bad" : ""), "data-i": i });
    const up = el("button", { class: "ghost", title: "move up", disabled: i === 0 }, "↑");
    const down = el("button", { class: "ghost", title: "move down", disabled: i === PG.layers.length - 1 }, "↓");
    const del = el("button", { class: "ghost", title: "remove" }, "✕");
    up.addEventListener("click", () => { [PG.layers[i - 1], PG.layers[i]] = [PG.layers[i], PG.layers[i - 1]]; pChanged(); });
    down.addEventListener("click", () => { [PG.layers[i + 1], PG.layers[i]] = [PG.layers[i], PG.layers[i + 1]]; pChanged(); });
    del.addEventListener("click", () => { PG.layers.splice(i, 1); pChanged(); });
    row.append(el("div", { class: "top" }, el("b", { text: `${i + 1}. ${P_TITLES[L.type]}` }), up, down, del));
    const fields = el("div", { class: "fields" });
    for (const [key, label] of P_FIELDS[L.type]) {
      let input;
      if (key === "relu") {
        input = el("input", { type: "checkbox", "data-field": key });
        input.checked = L.relu;
        input.addEventListener("change", () => { L.relu = input.checked; pChanged(false); });
        fields.append(el("label", { class: "check" }, input, label));
        continue;
      }
      if (key === "pool") {
        input = el("select", { "data-field": key }, el("option", { value: "max", text: "max" }), el("option", { value: "avg", text: "avg" }));
        input.value = L.pool;
        input.addEventListener("change", () => { L.pool = input.value; pChanged(false); });
      } else {
        input = el("input", { type: "number", "data-field": key, value: String(L[key]), step: key === "p" ? "0.05" : "1", min: key === "padding" ? "0" : key === "p" ? "0" : "1" });
        input.addEventListener("input", () => {
          const v = key === "p" ? parseFloat(input.value) : parseInt(input.value, 10);
          if (Number.isNaN(v)) return;
          L[key] = v;
          pChangedSoon();
        });
      }
      fields.append(el("label", {}, label, input));
    }
    row.append(fields);
    box.append(row);
  });
  $("p-input-row").textContent = `input ${pInputShape()} (${$("p-data").value})`;
}

/** Outline the layer that cannot work (without rebuilding the inputs: typing goes on). */
function markBadLayer() {
  const bad = PG.error ? PG.error.layer : null;
  for (const row of $("p-layers").querySelectorAll(".play-layer")) row.classList.toggle("bad", Number(row.dataset.i) === bad);
}

function pChanged(rerender) {
  if (rerender !== false) renderLayerEditor();
  pSummaryLatest();
}
const pSummarySoon = debounce(() => pSummaryLatest(), 150);
function pChangedSoon() { pSummarySoon(); }

async function pSummary() {
  const spec = pSpec();
  let doc;
  try {
    doc = await api("/api/playground/summary", { json: spec });
  } catch (e) {
    // 422: a layer that cannot work, explained, with the rows before it; other errors go to the banner
    if (e.status === 422 && e.doc && e.doc.explanation !== undefined) {
      showError(null);
      PG.error = e.doc;
      renderPlayError(e.doc);
      renderPlayTotals(null);
      renderPlayRows(e.doc.layers || [], e.doc.layer);
      markBadLayer();
      $("p-train").disabled = true;
      return;
    }
    PG.error = e.doc && e.doc.layer !== undefined ? e.doc : null;
    markBadLayer();
    throw e;
  }
  showError(null);
  PG.error = null;
  PG.doc = doc;
  $("p-error").hidden = true;
  markBadLayer();
  renderPlayTotals(doc);
  renderPlayRows(doc.layers, null);
  $("p-code").textContent = doc.code;
  $("p-train").disabled = Boolean(PG.job && PG.job.status === "running") || !doc.trainable;
  $("p-train").title = doc.trainable ? "" : `too large to train here (limits: ${fmtInt(doc.limits.params)} parameters, ${fmtInt(doc.limits.macs)} MACs)`;
}
const pSummaryLatest = latest(pSummary);

/** The totals of a valid model; "–" while a layer cannot work (no totals of a model that does not exist). */
function renderPlayTotals(d) {
  const totals = $("p-totals");
  totals.innerHTML = "";
  const add = (k, v, id) => totals.append(el("div", { class: "total" }, el("div", { class: "k", text: k }), el("div", { class: "v", id, text: v })));
  add("parameters", d ? fmtInt(d.total_params) : "–", "p-params");
  add("multiply-accumulates", d ? fmtInt(d.total_macs) : "–", "p-macs");
  add("input → output", d ? `${d.input_shape.join("×")} → ${d.output_shape.join("×")}` : "–", "p-io");
  add("layers", String(PG.layers.length), "p-count");
}

function renderPlayError(e) {
  const box = $("p-error");
  box.hidden = false;
  box.innerHTML = "";
  box.append(el("div", {}, el("b", { text: e.error })));
  box.append(el("div", { class: "explain", id: "p-explain", text: e.explanation }));
  box.append(el("div", { class: "trace", text: `glassnet.trace said: ${e.trace_error}` }));
}

function renderPlayRows(rows, badLayer) {
  const t = $("p-table");
  t.innerHTML = "";
  t.append(el("thead", {}, el("tr", {}, ...["#", "layer", "modules", "output shape", "parameters", "MACs", "receptive field"]
    .map((h, i) => el("th", { class: i >= 3 ? "num" : null, text: h })))));
  const body = el("tbody");
  const strip = $("p-strip");
  strip.innerHTML = "";
  strip.append(el("span", { class: "box", text: `input ${pInputShape()}` }));
  for (const r of rows) {
    body.append(el("tr", { class: r.auto ? "auto" : null, "data-spec": r.spec === null ? "" : r.spec },
      el("td", { text: r.spec === null ? "" : String(r.spec + 1) }),
      el("td", { text: r.description }),
      el("td", { class: "detail", text: r.kinds.join(" + ") }),
      el("td", { class: "num", text: r.output_shape.join("×") }),
      el("td", { class: "num", text: fmtInt(r.params) }),
      el("td", { class: "num", text: fmtInt(r.macs) }),
      el("td", { class: "num", text: `${r.rf[0]}×${r.rf[1]}` })));
    strip.append(el("span", { class: "arrow", text: "→" }), el("span", { class: `box ${r.type}`, title: r.description, text: r.output_shape.join("×") }));
  }
  if (badLayer !== null && badLayer !== undefined) {
    const L = PG.layers[badLayer];
    body.append(el("tr", { class: "bad" }, el("td", { text: String(badLayer + 1) }), el("td", { text: L ? P_TITLES[L.type] : "" }),
      el("td", { class: "detail", text: "cannot work: see above" }), el("td"), el("td"), el("td"), el("td")));
    strip.append(el("span", { class: "arrow", text: "→" }), el("span", { class: "box", style: "background:#fee2e2", text: "✗" }));
  }
  t.append(body);
}

// ---------------------------------------------------------------------------- training
/** steps, or epochs when the epochs field is filled in. */
function pBound() {
  const epochs = parseInt($("p-epochs").value, 10);
  if (epochs > 0) return { epochs: Math.min(10, epochs) };
  return { steps: Math.max(1, Math.min(1000, parseInt($("p-steps").value, 10) || 200)) };
}

async function pTrain() {
  const body = Object.assign({
    spec: pSpec(),
    batch_size: Math.max(1, Math.min(256, parseInt($("p-batch").value, 10) || 32)),
    lr: parseFloat($("p-lr").value) || 0.003,
    optimizer: $("p-opt").value,
    watch: PG.watch,
  }, pBound());
  pStarted(await api("/api/playground/train", { json: body }));
}

async function pResume() {
  if (!PG.job) return;
  pStarted(await api("/api/playground/resume", { json: Object.assign({ job: PG.job.id, watch: PG.watch }, pBound()) }));
}

async function pSave() {
  if (!PG.job) return;
  const name = $("p-save-name").value.trim();
  const d = await api("/api/playground/save", { json: name ? { job: PG.job.id, name } : { job: PG.job.id } });
  showError(null);
  const box = $("p-saved");
  box.innerHTML = "";
  box.dataset.run = d.run;
  box.append(el("span", { text: `saved ${d.checkpoint} (step ${d.step}, ${d.epoch} epoch(s)) — ` }),
    el("a", { href: "#activations", text: "open it in Activations" }), " · ", el("a", { href: "#training", text: "Training" }));
  $("p-save-name").value = "";
}

function pStarted(job) {
  showError(null);
  PG.job = job;
  PG.version = null;
  PG.filtersStep = null;
  PG.watchStep = null;
  $("p-train").disabled = true;
  $("p-resume").disabled = true;
  $("p-save").disabled = true;
  $("p-stop").disabled = false;
  $("p-train-title").textContent = `— ${job.title}`;
  clearInterval(PG.poll);
  PG.poll = setInterval(guard(pPoll), 400);
  pPoll().catch(showError);
}

async function pPoll() {
  if (!PG.job) return;
  const id = PG.job.id;
  const q = PG.version === null ? "" : `?since=${PG.version}`;
  const j = await api(`/api/jobs/${id}${q}`);
  if (!PG.job || PG.job.id !== id) return;
  if (!j.unchanged) { PG.job = j; PG.version = j.version; renderTraining(j); }
  if (j.status !== "running") {
    clearInterval(PG.poll);
    PG.poll = null;
    $("p-stop").disabled = true;
    $("p-train").disabled = Boolean(PG.error) || !(PG.doc && PG.doc.trainable);
    const again = ["done", "cancelled", "timeout"].includes(j.status);
    $("p-resume").disabled = !again;
    $("p-save").disabled = !again;
  }
}

async function renderTraining(j) {
  const r = j.result || {};
  const curve = r.curve || [];
  const last = curve[curve.length - 1];
  const evals = r.evals || [];
  const model = r.step !== undefined ? ` · the model's step ${r.step}, epoch ${fmt(r.epoch, 2)}` : "";
  $("p-train-status").textContent = `${j.status}: step ${j.done} of ${j.total}` + (j.message ? ` — ${j.message}` : "") + ` (${fmt(j.elapsed, 1)} s)` + model;
  $("p-train-status").dataset.status = j.status;
  $("p-last").textContent = last ? `step ${last.step}: loss ${fmt(last.loss, 4)}, batch accuracy ${fmtPct(last.acc)}` : "";
  $("p-evals").textContent = evals.length
    ? `test accuracy (${evals.length > 1 ? "on 500 test images" : "500 test images"}): ` + evals.map((e) => `${e.step}: ${fmtPct(e.test_acc)}`).join(" · ")
    : "";
  drawCurve($("p-curve"), curve);
  await renderWatch(r);
  if (r.filters && r.filters.step !== PG.filtersStep) {
    PG.filtersStep = r.filters.step;
    const f = r.filters;
    const draw = async (canvas, pic) => {
      const im = await loadImage(pic.png);
      const s = Math.max(2, Math.min(10, Math.floor(220 / Math.max(1, pic.layout.width))));
      const ctx = sizeCanvas(canvas, pic.layout.width * s, pic.layout.height * s);
      ctx.drawImage(im, 0, 0, pic.layout.width * s, pic.layout.height * s);
    };
    if (r.filters_start) await draw($("p-filters0"), r.filters_start);
    await draw($("p-filters"), f);
    $("p-filters").dataset.step = String(f.step);
    $("p-filters-now").textContent = `after step ${f.step}`;
    $("p-filters-caption").textContent = `${f.shape.join("×")}` + (f.shape[1] > 1 ? " (input channel 0)" : "") +
      " — blue < 0 < red, ±the largest weight of each snapshot";
  }
}

/** One picture of a grid (filters, feature maps) on a canvas, at a whole-pixel scale fitting `width`. */
async function drawGrid(canvas, pic, width) {
  const im = await loadImage(pic.png);
  const s = Math.max(1, Math.min(8, Math.floor(width / Math.max(1, pic.layout.width))));
  const ctx = sizeCanvas(canvas, pic.layout.width * s, pic.layout.height * s);
  ctx.drawImage(im, 0, 0, pic.layout.width * s, pic.layout.height * s);
}

async function renderWatch(r) {
  const w = r.watch;
  if (!w || w.step === PG.watchStep) return;
  PG.watchStep = w.step;
  if (r.watch_input) $("p-watch-input").src = r.watch_input.png;
  $("p-watch-caption").textContent = w.layer ? `— test image #${w.index} (${w.label}), layer ${w.layer}, ${w.shape.join("×")}; ` +
    (w.signed ? "blue < 0 < red" : "black 0 … bright max") + ", one scale per snapshot" : `— test image #${w.index}: the model has no convolution`;
  if (w.png) {
    if (r.watch_start && r.watch_start.png) await drawGrid($("p-watch0"), r.watch_start, 300);
    await drawGrid($("p-watch"), w, 300);
  }
  $("p-watch").dataset.step = String(w.step);
  $("p-watch-now").textContent = `after step ${w.step} (epoch ${fmt(w.epoch, 2)})`;
  $("p-watch-pred").textContent = `the model says ${w.predicted} (${fmtPct(w.probability)}); it is ${w.label}`;
  const strip = $("p-watch-epochs");
  strip.innerHTML = "";
  for (const e of r.watch_epochs || []) {
    if (!e.png) continue;
    const c = el("canvas", { class: "pix" });
    strip.append(el("div", { class: "watch-epoch", "data-epoch": Math.round(e.epoch) }, el("div", { class: "small muted", text: `end of epoch ${Math.round(e.epoch)}` }), c));
    await drawGrid(c, e, 150);
  }
}

function drawCurve(canvas, curve) {
  const W = Math.max(260, canvas.parentElement.clientWidth - 32), H = 220;
  const ctx = sizeCanvas(canvas, W, H);
  ctx.imageSmoothingEnabled = true;
  const m = { l: 40, r: 40, t: 8, b: 24 };
  ctx.clearRect(0, 0, W, H);
  ctx.font = "10px ui-monospace, DejaVu Sans Mono, monospace";
  if (!curve.length) { ctx.fillStyle = "#6b7385"; ctx.textAlign = "center"; ctx.fillText("no steps yet", W / 2, H / 2); return; }
  const n = curve[curve.length - 1].step;
  const maxLoss = Math.max(...curve.map((c) => c.loss), 0.1);
  const X = (s) => m.l + (s / Math.max(1, n)) * (W - m.l - m.r);
  const YL = (v) => H - m.b - (v / maxLoss) * (H - m.t - m.b);
  const YA = (v) => H - m.b - v * (H - m.t - m.b);
  ctx.strokeStyle = "#eceef3";
  for (let k = 0; k <= 4; k++) { ctx.beginPath(); ctx.moveTo(m.l, YA(k / 4)); ctx.lineTo(W - m.r, YA(k / 4)); ctx.stroke(); }
  ctx.fillStyle = "#4f46e5"; ctx.textAlign = "right";
  ctx.fillText(fmt(maxLoss, 2), m.l - 4, m.t + 6); ctx.fillText("0", m.l - 4, H - m.b);
  ctx.fillStyle = "#059669"; ctx.textAlign = "left";
  ctx.fillText("100%", W - m.r + 4, m.t + 6); ctx.fillText("0%", W - m.r + 4, H - m.b);
  ctx.fillStyle = "#6b7385"; ctx.textAlign = "center"; ctx.fillText(`step ${n}`, W - m.r, H - 6);
  const line = (pts, colour, alpha) => {
    ctx.strokeStyle = colour; ctx.globalAlpha = alpha; ctx.lineWidth = 1.6; ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
    ctx.stroke(); ctx.globalAlpha = 1;
  };
  line(curve.map((c) => [X(c.step), YL(c.loss)]), "#4f46e5", 0.9);
  line(curve.map((c) => [X(c.step), YA(c.acc)]), "#059669", 0.5);
}

async function pStop() {
  if (!PG.job) return;
  await api(`/api/jobs/${PG.job.id}`, { method: "DELETE" });
  await pPoll();
}

views.playground = {
  enter: guard(async () => {
    if (!PG.started) {
      PG.started = true;
      for (const b of document.querySelectorAll("#view-playground [data-add]")) {
        b.addEventListener("click", () => { PG.layers.push(P_NEW[b.dataset.add]()); pChanged(); });
      }
      $("p-data").addEventListener("change", () => { pChanged(); pLoadWatch().catch(showError); });
      $("p-resume").addEventListener("click", guard(pResume));
      $("p-save").addEventListener("click", guard(pSave));
      $("p-reset").addEventListener("click", () => { PG.layers = P_DEFAULT(); pChanged(); });
      $("p-train").addEventListener("click", guard(pTrain));
      $("p-stop").addEventListener("click", guard(pStop));
      $("p-copy").addEventListener("click", () => { if (navigator.clipboard) navigator.clipboard.writeText($("p-code").textContent).catch(() => {}); });
      await pLoadChoices();
      renderLayerEditor();
      drawCurve($("p-curve"), []);
      pLoadWatch().catch(showError);
    }
    await pSummary();
  }),
};
