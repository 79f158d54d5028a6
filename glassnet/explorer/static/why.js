/* glassnet explorer — Why this prediction: saliency, SmoothGrad, guided backprop, Grad-CAM, occlusion,
   and the test images behind a run's confusion-matrix cells. Uses the helpers of app.js. */
"use strict";

const W = { started: false, picker: null, image: null, label: "", gen: 0, info: null, results: {}, doc: null,
  metrics: null, cell: null };

const W_METHODS = [
  ["gradcam", "Grad-CAM", "where the chosen layer sees the class"],
  ["saliency", "Saliency", "the gradient of the class score"],
  ["guided", "Guided backprop", "ReLU's backward rule changed"],
  ["smoothgrad", "SmoothGrad", "the gradient, averaged over noisy copies"],
  ["occlusion", "Occlusion", "cover a window, watch the probability"],
];

function wBody(methods) {
  const num = (id) => { const v = $(id).value.trim(); return v === "" ? null : Number(v); };
  const body = Object.assign(sourceOf($("w-model").value), {
    image: W.image, methods,
    smoothgrad_n: Math.max(1, Math.min(50, parseInt($("w-sg-n").value, 10) || 16)),
  });
  if (body.pretrained === false) delete body.pretrained;
  const t = $("w-target").value;
  if (t !== "" && t !== "pred") body.target = parseInt(t, 10);
  if ($("w-layer").value) body.layer = $("w-layer").value;
  for (const [id, key] of [["w-sg-sigma", "smoothgrad_sigma"], ["w-occ-window", "occlusion_window"], ["w-occ-stride", "occlusion_stride"]]) {
    const v = num(id);
    if (v !== null && !Number.isNaN(v)) body[key] = v;
  }
  return body;
}

async function wSelectModel() {
  const value = $("w-model").value;
  const src = sourceOf(value);
  const d = await api("/api/why/layers?" + sourceQuery(value));
  W.info = d;
  const layerSel = $("w-layer");
  layerSel.innerHTML = "";
  for (const L of d.layers) layerSel.append(el("option", { value: L.name, text: `${L.name} (${L.kind}, ${L.shape.join("×")})` }));
  layerSel.value = d.default || (d.layers.length ? d.layers[d.layers.length - 1].name : "");
  const tSel = $("w-target");
  tSel.innerHTML = "";
  tSel.append(el("option", { value: "pred", text: "the predicted class" }));
  d.classes.forEach((c, i) => tSel.append(el("option", { value: String(i), text: `${i}: ${c}` })));
  tSel.value = "pred";
  const s = d.source;
  $("w-meta").textContent = `${s.title} · input ${s.input_shape.join("×")} · ${fmtInt(s.classes)} classes` +
    (s.resize_shorter ? ` · shorter side → ${s.resize_shorter}, centre crop` : "");
  let info = null;
  if (src.checkpoint) info = await api("/api/checkpoint?checkpoint=" + encodeURIComponent(src.checkpoint));
  await W.picker.setCheckpoint(src.checkpoint || null, info);
  if (!W.image || (W.image.test !== undefined && !W.picker.hasTests)) {
    if (W.picker.hasTests) { W.image = { test: 0 }; W.label = "test image 0"; }
    else { W.image = { sample: "chelsea" }; W.label = "sample chelsea"; }
  }
  await wExplain();
}

async function wExplain() {
  if (!W.image) return;
  const gen = ++W.gen;
  W.results = {};
  renderWhyCards(true);
  const first = await api("/api/why", { json: wBody(["gradcam", "saliency", "guided"]) });
  if (gen !== W.gen) return;
  showError(null);
  W.doc = first;
  Object.assign(W.results, first.results);
  renderWhyHead(first);
  renderWhyCards(false);
  for (const m of ["smoothgrad", "occlusion"]) {
    try {
      const d = await api("/api/why", { json: wBody([m]) });
      if (gen !== W.gen) return;
      Object.assign(W.results, d.results);
    } catch (e) {
      if (gen !== W.gen) return;
      W.results[m] = { error: e.message };
    }
    renderWhyCards(false);
  }
}
const wExplainLatest = latest(wExplain);

function renderWhyHead(d) {
  $("w-input").src = d.input.png;
  $("w-input").style.width = Math.min(268, Math.max(168, 6 * d.input.width)) + "px";
  $("w-input-caption").textContent = `${d.input.width}×${d.input.height}, ${d.label}`;
  const box = $("w-preds");
  box.innerHTML = "";
  box.append(el("div", { class: "pred head" }, el("span", { text: "class" }), el("span", { text: "probability" }), el("span", { text: "" }), el("span", { text: "logit" })));
  d.predictions.forEach((p, i) => {
    const row = el("div", { class: "pred clickable" + (i === 0 ? " top" : "") + (p.index === d.target.index ? " chosen" : ""), title: `explain class ${p.index}` },
      el("span", { class: "name", text: p.class }),
      el("span", { class: "bar" }, el("span", { style: `width:${Math.max(0.5, 100 * p.probability).toFixed(2)}%` })),
      el("span", { class: "p", text: fmtPct(p.probability) }),
      el("span", { class: "logit", text: fmt(p.logit, 3) }));
    row.addEventListener("click", () => { $("w-target").value = i === 0 ? "pred" : String(p.index); wExplainLatest(); });
    box.append(row);
  });
  const t = d.target;
  $("w-target-line").innerHTML = "";
  $("w-target-line").append(
    el("span", {}, "Explaining class ", el("b", { id: "w-target-name", text: `${t.index}: ${t.class}` }),
      ` — p = ${fmt(t.probability, 4)}, logit z = ${fmt(t.logit, 4)}` + (t.is_predicted ? " (the predicted class)" : ` (the model predicts ${d.predictions[0].class})`)),
    el("span", { class: "muted small", text: ` · Grad-CAM at layer ${d.layer}` }));
}

function kv(pairs) {
  const box = el("div", { class: "nums" });
  for (const [k, v] of pairs) box.append(el("span", { class: "k", text: k }), el("span", { text: v }));
  return box;
}

function renderWhyCards(pendingAll) {
  const wrap = $("w-results");
  wrap.innerHTML = "";
  const mapOnly = $("w-maponly").checked;
  const width = W.doc ? Math.min(300, Math.max(196, W.doc.input.width * Math.floor(280 / W.doc.input.width))) : 252;
  for (const [key, title, sub] of W_METHODS) {
    const r = W.results[key];
    const card = el("div", { class: "card method" + (r ? "" : " pending"), "data-method": key },
      el("h4", {}, title, el("span", { class: "muted small", text: sub }),
        r && r.seconds !== undefined ? el("span", { class: "muted small secs", text: fmtSeconds(r.seconds) }) : null));
    if (!r) {
      card.append(el("div", { class: "muted small", text: pendingAll ? "computing…" : "computing… (the slow ones come last)" }));
      wrap.append(card);
      continue;
    }
    if (r.error) { card.append(el("div", { class: "small", style: "color:var(--bad)", text: r.error })); wrap.append(card); continue; }
    const pic = pixImg(mapOnly ? r.map : r.overlay, width, { class: "pix hoverable", "data-testid": `why-${key}` });
    const pics = el("div", { class: "pics" }, pic);
    if (key === "guided" && r.gradient_png) pics.append(el("figure", { class: "small" }, pixImg(r.gradient_png, 120), el("figcaption", { class: "muted small", text: "the gradient itself" })));
    if (key === "gradcam") pics.append(el("figure", { class: "small" }, pixImg(r.cam_png, 120), el("figcaption", { class: "muted small", text: `at the layer: ${r.shape.join("×")}` })));
    card.append(pics);
    const readout = el("div", { class: "readout" });
    card.append(readout, el("div", { class: "small muted", text: r.colour }), el("div", { class: "formula", text: r.formula }));
    if (key === "gradcam") renderCamNumbers(card, r, pic, readout);
    else if (key === "occlusion") renderOcclusionNumbers(card, r, pic, readout);
    else {
      const s = r.stats;
      const pairs = [
        ["max |∂z/∂x|", `${fmt(s.max_abs, 4)} at channel ${s.at.channel}, row ${s.at.y}, column ${s.at.x}`],
        ["mean |∂z/∂x|", fmt(s.mean_abs, 4)], ["‖∂z/∂x‖₂", fmt(s.l2, 4)], ["positive", fmtPct(s.positive_fraction)],
        ["largest", r.top.slice(0, 3).map((t) => `(${t.y}, ${t.x}) ${fmt(t.value, 3)}`).join("  ")],
      ];
      if (key === "smoothgrad") pairs.push(["noise", `n = ${r.n} copies, σ = ${fmt(r.sigma, 4)}, seed ${r.seed}`]);
      card.append(kv(pairs));
    }
    wrap.append(card);
  }
}

function picturePixel(pic, ev, h, w) {
  const rect = pic.getBoundingClientRect();
  const x = Math.floor(((ev.clientX - rect.left) / rect.width) * w), y = Math.floor(((ev.clientY - rect.top) / rect.height) * h);
  return x >= 0 && y >= 0 && x < w && y < h ? { x, y } : null;
}

function renderCamNumbers(card, r, pic, readout) {
  const H = W.doc.input.height, Wd = W.doc.input.width, [ch, cw] = r.shape;
  card.append(kv([
    ["layer", `${r.layer}: ${r.channels} channels of ${ch}×${cw}`],
    ["max", `${fmt(r.max.value, 4)} at cell (${r.max.y}, ${r.max.x})`],
    ["α_c > 0", `${r.alpha_positive} of ${r.channels} channels`],
    ["cut by ReLU", fmtPct(r.relu_zeroed) + " of the cells"],
  ]));
  card.append(numTable(r.alpha_top.map((a) => [a.channel, a.alpha, a.mean_activation, a.share]),
    { caption: "channels with the largest share α_c·mean(A_c)", cols: ["channel", "α_c", "mean A_c", "share"] }));
  if (r.cam && ch * cw <= 196) card.append(numTable(r.cam, { caption: `Grad-CAM at the layer (${ch}×${cw})`, digits: 3, cls: "cam-grid" }));
  pic.addEventListener("mousemove", (ev) => {
    const p = picturePixel(pic, ev, H, Wd);
    if (!p || !r.cam) return;
    const cy = Math.min(ch - 1, Math.floor((p.y * ch) / H)), cx = Math.min(cw - 1, Math.floor((p.x * cw) / Wd));
    readout.textContent = `pixel (${p.y}, ${p.x}) → cell (${cy}, ${cx}): Grad-CAM ${fmt(r.cam[cy][cx], 4)}`;
  });
}

function renderOcclusionNumbers(card, r, pic, readout) {
  const H = W.doc.input.height, Wd = W.doc.input.width;
  const b = r.max_drop.box, m = r.min_drop.box;
  card.append(kv([
    ["windows", `${r.windows} = ${r.grid[0]}×${r.grid[1]}, ${r.window}×${r.window}, stride ${r.stride}`],
    ["p_t unoccluded", fmt(r.p_base, 4)],
    ["largest drop", `${fmt(r.max_drop.value, 4)}: rows ${b[0]}–${b[0] + b[2] - 1}, columns ${b[1]}–${b[1] + b[3] - 1}`],
    ["smallest", `${fmt(r.min_drop.value, 4)}: rows ${m[0]}–${m[0] + m[2] - 1}, columns ${m[1]}–${m[1] + m[3] - 1}`],
  ]));
  if (r.grid[0] * r.grid[1] <= 256) {
    const det = el("details", {}, el("summary", { class: "small", text: "drop of p_t per window (rows × columns of windows)" }));
    det.append(numTable(r.drop, { digits: 3 }));
    card.append(det);
  }
  pic.addEventListener("mousemove", (ev) => {
    const p = picturePixel(pic, ev, H, Wd);
    if (!p) return;
    const hits = [];
    for (let i = 0; i < r.grid[0]; i++) for (let j = 0; j < r.grid[1]; j++) {
      const y0 = i * r.stride, x0 = j * r.stride;
      if (p.y >= y0 && p.y < y0 + r.window && p.x >= x0 && p.x < x0 + r.window) hits.push(r.drop[i][j]);
    }
    const mean = hits.length ? hits.reduce((a, v) => a + v, 0) / hits.length : 0;
    readout.textContent = `pixel (${p.y}, ${p.x}): ${hits.length} windows cover it, mean drop ${fmt(mean, 4)}`;
  });
}

// ---------------------------------------------------------------------------- confusion matrix
async function wLoadRuns() {
  const d = await api("/api/runs");
  const sel = $("w-run");
  const prev = sel.value;
  sel.innerHTML = "";
  const runs = d.runs.filter((r) => r.has_metrics);
  for (const r of runs) sel.append(el("option", { value: r.name, text: r.name }));
  $("w-confusion").hidden = false;
  if (!runs.length) {
    $("w-matrix").innerHTML = "";
    $("w-matrix").append(el("div", { class: "muted small", text: "No run has a metrics.json yet (glassnet train writes one after its final test)." }));
    return;
  }
  sel.value = runs.some((r) => r.name === prev) ? prev : runs[0].name;
  await wSelectRun();
}

async function wSelectRun() {
  const m = await api(`/api/runs/${encodeURIComponent($("w-run").value)}/metrics`);
  W.metrics = m;
  W.cell = null;
  const sel = $("w-run-ckpt");
  sel.innerHTML = "";
  for (const c of m.checkpoints) sel.append(el("option", { value: c, text: c }));
  const last = m.checkpoints.find((c) => c.endsWith("/last.safetensors"));
  if (last) sel.value = last;
  $("w-run-meta").textContent = `metrics.json: accuracy ${fmtPct(m.accuracy)}, ${fmtInt(m.errors)} of ${fmtInt(m.total)} test images wrong` +
    (m.checkpoints.length ? "" : " · no checkpoint in this run: cells cannot be opened");
  renderMatrix();
  $("w-cell").innerHTML = "";
}

function renderMatrix() {
  const m = W.metrics;
  const t = el("table", { class: "confusion", id: "w-matrix-table" });
  const short = (s) => (s.length > 9 ? s.slice(0, 8) + "…" : s);
  t.append(el("tr", {}, el("th", { text: "true ↓ / predicted →" }), ...m.classes.map((c, j) => el("th", { title: c, text: `${j} ${short(c)}` }))));
  m.confusion.forEach((row, i) => {
    const total = row.reduce((a, v) => a + v, 0) || 1;
    const tr = el("tr", {}, el("th", { title: m.classes[i], text: `${i} ${short(m.classes[i])}` }));
    row.forEach((v, j) => {
      const f = v / total;
      const bg = v === 0 ? "#fff" : i === j ? `rgba(16,185,129,${(0.12 + 0.6 * f).toFixed(3)})` : `rgba(225,29,72,${(0.12 + 0.8 * Math.sqrt(f)).toFixed(3)})`;
      const on = W.cell && W.cell.t === i && W.cell.p === j;
      const td = el("td", { class: (v ? "cell" : "zero") + (on ? " on" : ""), "data-t": i, "data-p": j, style: `background:${bg}`,
        title: `${m.classes[i]} predicted as ${m.classes[j]}: ${v}`, text: String(v) });
      if (v && m.checkpoints.length) td.addEventListener("click", guard(async () => { W.cell = { t: i, p: j, offset: 0 }; renderMatrix(); await wOpenCell(); }));
      tr.append(td);
    });
    t.append(tr);
  });
  $("w-matrix").innerHTML = "";
  $("w-matrix").append(t);
}

async function wOpenCell(append) {
  const c = W.cell;
  const ckpt = $("w-run-ckpt").value;
  const box = $("w-cell");
  if (!append) { box.innerHTML = ""; box.append(el("div", { class: "muted small", text: "evaluating the checkpoint on the test set…" })); }
  const d = await api("/api/why/confusion", { json: { checkpoint: ckpt, true_class: c.t, predicted_class: c.p, offset: c.offset, limit: 8 } });
  if (W.cell !== c) return;
  showError(null);
  const inFile = W.metrics.confusion[c.t][c.p];
  let list = box.querySelector(".cell-items");
  if (!append) {
    box.innerHTML = "";
    box.append(el("div", { id: "w-cell-title" },
      el("b", { text: `true ${d.true.class} → predicted ${d.predicted.class}` }),
      ` — metrics.json counts ${inFile}; ${ckpt} on ${d.dataset} now: `, el("b", { id: "w-cell-count", text: String(d.count) }),
      ` (accuracy ${fmtPct(d.accuracy)}). Each image: Grad-CAM at layer ${d.layer} for the true and for the predicted class.`));
    list = el("div", { class: "cell-items" });
    box.append(list);
  }
  for (const it of d.items) {
    const open = el("button", { class: "ghost small", text: "explain above" });
    open.addEventListener("click", guard(async () => {
      $("w-model").value = "ckpt:" + ckpt;
      W.image = { test: it.index };
      W.label = `test image ${it.index}`;
      W.picker.selectTest(it.index);
      await wSelectModel();
      window.scrollTo(0, 0);
    }));
    list.append(el("div", { class: "cell-item", "data-index": it.index },
      el("div", { class: "row" }, pixImg(it.png, 56),
        el("div", { class: "small" },
          el("div", {}, el("b", { text: `#${it.index}` })),
          el("div", { text: `p(${it.true.class}) = ${fmt(it.true.probability, 3)}` }),
          el("div", { text: `p(${it.predicted.class}) = ${fmt(it.predicted.probability, 3)}` }), open)),
      el("div", { class: "row" },
        el("figure", {}, el("figcaption", { text: `true: ${it.true.class}` }), pixImg(it.true.overlay, 130),
          el("div", { class: "muted", text: `max ${fmt(it.true.cam_max, 3)}, mean ${fmt(it.true.cam_mean, 3)}` })),
        el("figure", {}, el("figcaption", { text: `predicted: ${it.predicted.class}` }), pixImg(it.predicted.overlay, 130),
          el("div", { class: "muted", text: `max ${fmt(it.predicted.cam_max, 3)}, mean ${fmt(it.predicted.cam_mean, 3)}` })))));
  }
  const old = box.querySelector(".more");
  if (old) old.remove();
  const shown = c.offset + d.items.length;
  if (shown < d.count) {
    const more = el("button", { class: "ghost more", text: `more (${shown} of ${d.count} shown)` });
    more.addEventListener("click", guard(async () => { c.offset = shown; await wOpenCell(true); }));
    box.append(more);
  }
}

views.why = {
  enter: guard(async () => {
    if (!W.started) {
      W.started = true;
      W.picker = makeImagePicker($("w-picker"), "w", (image, label) => { W.image = image; W.label = label; wExplainLatest(); });
      const nCkpt = await fillModelSelect($("w-model"), {});
      if (!nCkpt) $("w-model").value = "pre:efficientnet_lite0";
      $("w-model").addEventListener("change", guard(async () => { W.image = null; await wSelectModel(); }));
      $("w-layer").addEventListener("change", () => wExplainLatest());
      $("w-target").addEventListener("change", () => wExplainLatest());
      for (const id of ["w-sg-n", "w-sg-sigma", "w-occ-window", "w-occ-stride"]) $(id).addEventListener("change", () => wExplainLatest());
      $("w-maponly").addEventListener("change", () => renderWhyCards(false));
      $("w-run").addEventListener("change", guard(wSelectRun));
      $("w-run-ckpt").addEventListener("change", guard(async () => { if (W.cell) { W.cell.offset = 0; await wOpenCell(); } }));
      await wSelectModel();
      await wLoadRuns();
    }
  }),
};
