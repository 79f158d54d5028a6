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
const PG = { started: false, layers: P_DEFAULT(), doc: null, error: null, job: null, poll: null, version: null };

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
  const d = $("p-data").value;
  $("p-input-row").textContent = `input ${d === "shapes-rgb" ? "3" : "1"}×28×28 (${d})`;
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
  const d = $("p-data").value;
  strip.append(el("span", { class: "box", text: `input ${d === "shapes-rgb" ? 3 : 1}×28×28` }));
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
async function pTrain() {
  const body = {
    spec: pSpec(),
    steps: Math.max(1, Math.min(1000, parseInt($("p-steps").value, 10) || 200)),
    batch_size: Math.max(1, Math.min(256, parseInt($("p-batch").value, 10) || 32)),
    lr: parseFloat($("p-lr").value) || 0.003,
    optimizer: $("p-opt").value,
  };
  const job = await api("/api/playground/train", { json: body });
  showError(null);
  PG.job = job;
  PG.version = null;
  PG.filtersStep = null;
  $("p-train").disabled = true;
  $("p-stop").disabled = false;
  $("p-train-title").textContent = `— ${job.title}`;
  clearInterval(PG.poll);
  PG.poll = setInterval(guard(pPoll), 400);
  await pPoll();
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
  }
}

async function renderTraining(j) {
  const r = j.result || {};
  const curve = r.curve || [];
  const last = curve[curve.length - 1];
  const evals = r.evals || [];
  $("p-train-status").textContent = `${j.status}: step ${j.done} of ${j.total}` + (j.message ? ` — ${j.message}` : "") + ` (${fmt(j.elapsed, 1)} s)`;
  $("p-train-status").dataset.status = j.status;
  $("p-last").textContent = last ? `step ${last.step}: loss ${fmt(last.loss, 4)}, batch accuracy ${fmtPct(last.acc)}` : "";
  $("p-evals").textContent = evals.length
    ? `test accuracy (${evals.length > 1 ? "on 500 test images" : "500 test images"}): ` + evals.map((e) => `${e.step}: ${fmtPct(e.test_acc)}`).join(" · ")
    : "";
  drawCurve($("p-curve"), curve);
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
      $("p-data").addEventListener("change", () => pChanged());
      $("p-reset").addEventListener("click", () => { PG.layers = P_DEFAULT(); pChanged(); });
      $("p-train").addEventListener("click", guard(pTrain));
      $("p-stop").addEventListener("click", guard(pStop));
      $("p-copy").addEventListener("click", () => { if (navigator.clipboard) navigator.clipboard.writeText($("p-code").textContent).catch(() => {}); });
      renderLayerEditor();
      drawCurve($("p-curve"), []);
    }
    await pSummary();
  }),
};
