/* glassnet explorer — Backprop, step by step: the gradient of one image's loss at every layer,
   its histogram, the parameters' gradient norms and a numerical check per layer. */
"use strict";

const B = { started: false, picker: null, image: null, doc: null, step: 0, timer: null, gen: 0 };

function bBody() {
  const body = Object.assign(sourceOf($("b-model").value), { image: B.image, check: $("b-check").checked });
  if (body.pretrained === false) delete body.pretrained;
  const t = $("b-target").value;
  if (t !== "" && t !== "auto") body.target = parseInt(t, 10);
  return body;
}

async function bSelectModel() {
  const value = $("b-model").value;
  const src = sourceOf(value);
  const d = await api("/api/why/layers?" + sourceQuery(value));
  const tSel = $("b-target");
  tSel.innerHTML = "";
  tSel.append(el("option", { value: "auto", text: "the true label (test image) or the prediction" }));
  d.classes.forEach((c, i) => tSel.append(el("option", { value: String(i), text: `${i}: ${c}` })));
  let info = null;
  if (src.checkpoint) info = await api("/api/checkpoint?checkpoint=" + encodeURIComponent(src.checkpoint));
  await B.picker.setCheckpoint(src.checkpoint || null, info);
  if (!B.image || (B.image.test !== undefined && !B.picker.hasTests)) B.image = B.picker.hasTests ? { test: 0 } : { sample: "chelsea" };
  $("b-meta").textContent = `${d.source.title} · input ${d.source.input_shape.join("×")} · computed in float64`;
  await bRun();
}

async function bRun() {
  if (!B.image) return;
  const gen = ++B.gen;
  $("b-summary").textContent = "running forward and backward…";
  const d = await api("/api/backprop", { json: bBody() });
  if (gen !== B.gen) return;
  showError(null);
  B.doc = d;
  B.step = d.layers.length + 1; // everything shown; ⏮ goes back to the loss
  renderBackprop();
}
const bRunLatest = latest(bRun);

function badge(check) {
  if (!check) return null;
  const text = { pass: "✓ check passed", fail: "✗ check failed", noise: "≈ below float64 noise", skipped: "check skipped" }[check.status];
  return el("span", { class: `badge ${check.status}`, title: check.message || (check.max_error !== undefined ? `largest relative error ${check.max_error}` : ""), text });
}

function drawHistogram(h, width, colour) {
  const c = el("canvas", { class: "hist" });
  const H = 56;
  const ctx = sizeCanvas(c, width, H + 14);
  ctx.imageSmoothingEnabled = true;
  const max = Math.max(1, ...h.counts.map((v) => Math.log1p(v)));
  const bw = width / h.counts.length;
  ctx.fillStyle = colour || "#4f46e5";
  h.counts.forEach((v, i) => {
    const hh = (Math.log1p(v) / max) * H;
    ctx.fillRect(i * bw + 0.5, H - hh, Math.max(1, bw - 1), hh);
  });
  ctx.strokeStyle = "#9ca3af";
  ctx.beginPath(); ctx.moveTo(width / 2, 0); ctx.lineTo(width / 2, H); ctx.stroke();
  ctx.fillStyle = "#6b7385";
  ctx.font = "10px ui-monospace, DejaVu Sans Mono, monospace";
  ctx.textAlign = "left"; ctx.fillText(h.lo.toPrecision(2), 0, H + 11);
  ctx.textAlign = "right"; ctx.fillText(h.hi.toPrecision(2), width, H + 11);
  ctx.textAlign = "center"; ctx.fillText("0", width / 2, H + 11);
  c.title = `${h.counts.reduce((a, v) => a + v, 0)} values in ${h.bins} bins from ${fmt(h.lo, 4)} to ${fmt(h.hi, 4)} (height: log(1 + count)); ${h.zeros} exactly zero`;
  return c;
}

function checkTable(check) {
  if (!check || !check.coords) return el("div", { class: "small muted", text: check && check.message ? check.message : "" });
  const det = el("details", {}, el("summary", { class: "small", text:
    `numerical check: ${check.coords.length} coordinates, largest relative error ${fmt(check.max_error, 3)} (noise floor ${fmt(check.noise, 3)})` }));
  det.append(numTable(check.coords.map((r) => [r.tensor + "[" + r.index.join(",") + "]", r.analytic, r.numeric, r.error, r.ok ? (r.note ? "✓*" : "✓") : "✗"]),
    { cols: ["coordinate", "backward", "(s₊ − s₋)/2ε", "rel. error", ""], digits: 8 }));
  if (check.coords.some((r) => !r.above_noise)) det.append(el("div", { class: "small muted", text: "gradients under 100× the noise floor agree within the noise; they do not count towards the largest error" }));
  const notes = check.coords.filter((r) => r.note).map((r) => r.note);
  if (notes.length) det.append(el("div", { class: "small muted", text: "* " + notes[0] }));
  return det;
}

async function renderBackprop() {
  const d = B.doc;
  $("b-input").src = d.input.png;
  $("b-input").style.width = Math.min(268, Math.max(168, 6 * d.input.width)) + "px";
  $("b-input-caption").textContent = `${d.input.width}×${d.input.height}, ${d.label}`;
  const t = d.target;
  $("b-loss").innerHTML = "";
  $("b-loss").append(
    el("div", {}, "L = −log p(", el("b", { text: t.class }), ") = ", el("b", { id: "b-loss-value", text: fmt(d.loss, 6) })),
    el("div", { class: "muted", text: `p(${t.class}) = ${fmt(t.probability, 6)}; predicted ${d.predicted.class} (${fmtPct(d.predicted.probability)})` }),
    el("div", { class: "muted", text: `${d.steps} backward steps (ops), ${fmtSeconds(d.seconds)} in all` }));
  $("b-logits").innerHTML = "";
  $("b-logits").append(numTable(d.logits_grad.map((r) => [r.class, r.p, r.onehot, r.grad]),
    { cols: ["class", "p", "y", "∂L/∂z = p − y"], digits: 5 }));
  const c = d.check;
  $("b-summary").textContent = c.enabled
    ? `numerical check per layer (float64, ε = ${c.eps}, ${c.coords} coordinates per tensor, tolerance ${c.tolerance}): ` +
      `${c.pass} passed, ${c.fail} failed, ${c.noise} below noise, ${c.skipped} skipped (${fmtSeconds(c.seconds)}); whole network ∂L/∂x: ${d.input_grad.check.status}`
    : "numerical check off";
  const wrap = $("b-layers");
  wrap.innerHTML = "";
  const all = [...d.layers, { input: true, name: "input x", kind: "∂L/∂x", shape: d.input_grad.shape, grad: d.input_grad, params: [], ops: [], check: d.input_grad.check }];
  const imgs = await Promise.all(all.map((L) => (L.grad && L.grad.picture ? loadImage(L.grad.picture.png) : null)));
  all.forEach((L, i) => {
    const g = L.grad;
    const head = el("div", { class: "layer-head" },
      el("span", { class: "nm", text: L.input ? "input" : L.name }), el("span", { class: "kind", text: L.kind }),
      el("span", { class: "muted", text: L.shape.join("×") }),
      el("span", { class: "stage", text: L.input ? "∂L/∂x, where backward ends" : `step ${i + 1}: ∂L/∂A at its output` }),
      badge(L.check),
      g ? el("span", { class: "stats", text: `‖g‖₂ ${fmt(g.stats.l2, 4)} · mean |g| ${fmt(g.stats.mean_abs, 3)} · min ${fmt(g.stats.min, 3)} · max ${fmt(g.stats.max, 3)} · zeros ${fmtPct(g.stats.zero_fraction)}` } ) : null);
    const card = el("div", { class: "card bp-layer", "data-step": i + 1, "data-layer": L.input ? "input" : L.name }, head);
    const body = el("div", { class: "bp-body" });
    if (g && g.picture) {
      const lay = g.picture.layout;
      const avail = Math.max(280, Math.min(640, wrap.clientWidth - 420));
      let s = lay.kind === "vector" ? Math.max(3, Math.min(14, Math.floor(420 / lay.cols))) : Math.max(1, Math.min(8, Math.floor(84 / Math.max(1, lay.tile_w))));
      s = Math.max(1, Math.min(s, Math.floor(avail / lay.width)));
      const cv = el("canvas", { class: "pix" });
      const ctx = sizeCanvas(cv, lay.width * s, lay.height * s);
      ctx.drawImage(imgs[i], 0, 0, lay.width * s, lay.height * s);
      body.append(el("div", { class: "col" }, cv, el("div", { class: "small muted", text:
        `blue < 0 < red, ±${fmt(g.picture.scale, 3)}` + (lay.shown < lay.total ? ` · first ${lay.shown} of ${lay.total} channels` : "") })));
    }
    const side = el("div", { class: "col" });
    if (g) side.append(el("div", { class: "small muted", text: "histogram of ∂L/∂A" }), drawHistogram(g.histogram, 230));
    body.append(side);
    const right = el("div", { class: "col", style: "flex:1; min-width:260px" });
    if (L.ops.length) {
      right.append(el("div", { class: "chain" }, L.input ? "" : `∂L/∂(input of ${L.name}) = backward of `,
        ...L.ops.map((o, j) => el("span", {}, j ? ", " : "", el("b", { text: o.op })))));
      right.append(el("div", { class: "ops" }, ...L.ops.map((o) => el("div", { text: `step ${o.step}: ${o.backward}` }))));
    } else if (L.composite) {
      right.append(el("div", { class: "ops", text: "a block: its layers' backward steps are listed under them" }));
    }
    if (L.params.length) {
      right.append(numTable(L.params.map((p) => [p.name, p.shape.join("×"), p.grad_norm, p.weight_norm, p.ratio === null ? "–" : p.ratio]),
        { cols: ["parameter", "shape", "‖∂L/∂W‖", "‖W‖", "ratio"], digits: 5 }));
      const hists = el("div", { class: "pics" });
      for (const p of L.params) if (p.histogram) hists.append(el("div", { class: "col" }, el("div", { class: "small muted", text: `∂L/∂${p.name.split(".").pop()}` }), drawHistogram(p.histogram, 150, "#059669")));
      right.append(hists);
    }
    right.append(checkTable(L.check));
    body.append(right);
    card.append(body);
    card.addEventListener("click", () => { B.step = i + 1; bApplyStep(false); });
    wrap.append(card);
  });
  bApplyStep(false);
}

function drawFlow() {
  const d = B.doc;
  if (!d) return;
  const items = [...d.layers.map((L) => ({ name: L.name, kind: L.kind, v: L.grad ? L.grad.stats.l2 : 0, check: L.check })),
    { name: "x", kind: "input", v: d.input_grad.stats.l2, check: d.input_grad.check }];
  const bw = Math.max(6, Math.min(26, Math.floor(1100 / items.length)));
  const W = Math.max(600, items.length * (bw + 2) + 60), H = 170, m = { l: 48, b: 26, t: 8 };
  const c = $("b-flow");
  const ctx = sizeCanvas(c, W, H);
  ctx.imageSmoothingEnabled = true;
  const vals = items.map((it) => it.v).filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...vals, 1))), hi = Math.ceil(Math.log10(Math.max(...vals, 1e-12)));
  const span = Math.max(1, hi - lo);
  const Y = (v) => H - m.b - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / span) * (H - m.b - m.t);
  ctx.font = "10px ui-monospace, DejaVu Sans Mono, monospace";
  ctx.fillStyle = "#6b7385"; ctx.strokeStyle = "#eceef3";
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (let e = lo; e <= hi; e += Math.max(1, Math.ceil(span / 5))) {
    ctx.beginPath(); ctx.moveTo(m.l, Y(10 ** e)); ctx.lineTo(W, Y(10 ** e)); ctx.stroke();
    ctx.fillText(`1e${e}`, m.l - 4, Y(10 ** e));
  }
  const colours = { pass: "#16a34a", fail: "#dc2626", noise: "#94a3b8", skipped: "#cbd5e1" };
  items.forEach((it, i) => {
    const x = m.l + 4 + i * (bw + 2);
    const reached = i + 1 <= B.step;
    ctx.globalAlpha = reached ? 1 : 0.25;
    ctx.fillStyle = i + 1 === B.step ? "#111827" : (KIND_COLOURS[it.kind] || "#64748b");
    const y = Y(it.v);
    ctx.fillRect(x, y, bw, H - m.b - y);
    if (it.check) { ctx.fillStyle = colours[it.check.status] || "#cbd5e1"; ctx.beginPath(); ctx.arc(x + bw / 2, H - m.b + 8, 3.5, 0, 2 * Math.PI); ctx.fill(); }
    ctx.globalAlpha = 1;
  });
  c.onclick = (ev) => {
    const p = pointer(c, ev);
    const i = Math.floor((p.x - m.l - 4) / (bw + 2));
    if (i >= 0 && i < items.length) { B.step = i + 1; bApplyStep(true); }
  };
  c.onmousemove = (ev) => {
    const p = pointer(c, ev);
    const i = Math.floor((p.x - m.l - 4) / (bw + 2));
    const tip = $("tooltip");
    if (i < 0 || i >= items.length) { tip.hidden = true; return; }
    const it = items[i];
    tip.textContent = `${it.name} (${it.kind})\n‖∂L/∂A‖₂ = ${fmt(it.v, 5)}` + (it.check ? `\ncheck: ${it.check.status}` : "");
    tip.hidden = false;
    tip.style.left = ev.clientX + 14 + "px"; tip.style.top = ev.clientY + 10 + "px";
  };
  c.onmouseleave = () => { $("tooltip").hidden = true; };
}

function bApplyStep(scroll) {
  const d = B.doc;
  if (!d) return;
  const total = d.layers.length + 1;
  B.step = Math.max(0, Math.min(total, B.step));
  const cards = [...$("b-layers").querySelectorAll(".bp-layer")];
  cards.forEach((card, i) => {
    card.classList.toggle("waiting", i + 1 > B.step);
    card.classList.toggle("current", i + 1 === B.step);
  });
  let text;
  if (B.step === 0) text = `step 0 of ${total}: the loss L = ${fmt(d.loss, 6)}; ∂L/∂z = p − y at the logits (left)`;
  else {
    const L = B.step <= d.layers.length ? d.layers[B.step - 1] : null;
    text = L ? `step ${B.step} of ${total}: ${L.name} (${L.kind}) — ∂L/∂A at its output` + (L.ops.length ? `, then the backward of ${L.ops.map((o) => o.op).join(", ")}` : "")
      : `step ${total} of ${total}: ∂L/∂x at the input: backpropagation is done`;
  }
  $("b-step").textContent = text;
  drawFlow();
  if (scroll && B.step > 0) cards[B.step - 1].scrollIntoView({ block: "nearest" });
}

function bStop() { clearInterval(B.timer); B.timer = null; $("b-play").textContent = "play"; }

views.backprop = {
  enter: guard(async () => {
    if (!B.started) {
      B.started = true;
      B.picker = makeImagePicker($("b-picker"), "b", (image) => { B.image = image; bRunLatest(); });
      const nCkpt = await fillModelSelect($("b-model"), {});
      if (!nCkpt) $("b-model").value = "pre:efficientnet_lite0";
      $("b-model").addEventListener("change", guard(async () => { B.image = null; await bSelectModel(); }));
      $("b-target").addEventListener("change", () => bRunLatest());
      $("b-check").addEventListener("change", () => bRunLatest());
      $("b-first").addEventListener("click", () => { bStop(); B.step = 0; bApplyStep(true); });
      $("b-prev").addEventListener("click", () => { bStop(); B.step -= 1; bApplyStep(true); });
      $("b-next").addEventListener("click", () => { bStop(); B.step += 1; bApplyStep(true); });
      $("b-all").addEventListener("click", () => { bStop(); B.step = B.doc ? B.doc.layers.length + 1 : 0; bApplyStep(false); });
      $("b-play").addEventListener("click", () => {
        if (B.timer) { bStop(); return; }
        if (!B.doc) return;
        if (B.step >= B.doc.layers.length + 1) B.step = 0;
        $("b-play").textContent = "pause";
        B.timer = setInterval(() => {
          B.step += 1;
          bApplyStep(true);
          if (B.step >= B.doc.layers.length + 1) bStop();
        }, 700);
      });
      await bSelectModel();
    }
  }),
  leave: () => bStop(),
};
