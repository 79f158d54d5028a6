/* glassnet explorer: plain JavaScript, no framework. Pictures on <canvas>, numbers beside them. */
"use strict";

// ============================================================================ helpers
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "html") node.innerHTML = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

class ApiError extends Error {}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  if (opts.json !== undefined) {
    opts.method = opts.method || "POST";
    opts.headers = Object.assign({ "Content-Type": "application/json" }, opts.headers || {});
    opts.body = JSON.stringify(opts.json);
    delete opts.json;
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    throw new ApiError(`cannot reach the explorer (${e.message})`);
  }
  let doc = null;
  try { doc = await resp.json(); } catch (e) { doc = null; }
  if (!resp.ok) {
    const err = new ApiError((doc && doc.error) || `${resp.status} ${resp.statusText}`);
    err.status = resp.status;
    err.doc = doc;
    throw err;
  }
  return doc;
}

function showError(err) {
  const box = $("error");
  if (!err) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
}

function guard(fn) {
  return async (...args) => {
    try { const r = await fn(...args); return r; } catch (e) { showError(e); console.error(e); return undefined; }
  };
}

const INT = new Intl.NumberFormat("en-US");
function fmtInt(n) { return INT.format(n); }
function fmt(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (Number.isInteger(v) && Math.abs(v) < 1e7) return String(v);
  const d = digits === undefined ? 4 : digits;
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return String(parseFloat(v.toFixed(d)));
}
function fmtSeconds(s) { return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`; }
function fmtPct(v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%"; }
function fmtBig(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + " G";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + " k";
  return fmtInt(n);
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const im = new Image();
    im.onload = () => resolve(im);
    im.onerror = () => reject(new ApiError("cannot decode an image sent by the server"));
    im.src = src;
  });
}

/** Size a canvas for crisp drawing: CSS size w×h, backing store × devicePixelRatio. */
function sizeCanvas(canvas, w, h) {
  const r = window.devicePixelRatio || 1;
  canvas.style.width = w + "px";
  canvas.style.height = h + "px";
  canvas.width = Math.round(w * r);
  canvas.height = Math.round(h * r);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(r, 0, 0, r, 0, 0);
  ctx.imageSmoothingEnabled = false;
  return ctx;
}

/** Pointer position in canvas CSS pixels. */
function pointer(canvas, ev) {
  const rect = canvas.getBoundingClientRect();
  return { x: ev.clientX - rect.left, y: ev.clientY - rect.top, w: rect.width, h: rect.height };
}

/** Run at most one request at a time; the latest call wins. */
function latest(fn) {
  let pending = null, running = false;
  return function (...args) {
    pending = args;
    if (running) return;
    running = true;
    (async () => {
      while (pending) {
        const a = pending; pending = null;
        try { await fn(...a); } catch (e) { showError(e); }
      }
      running = false;
    })();
  };
}

function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

function matrixTable(rows, caption, opts) {
  const o = opts || {};
  const t = el("table", { class: "mat" });
  if (caption) t.append(el("caption", { text: caption }));
  rows.forEach((row, i) => {
    const tr = el("tr");
    row.forEach((v, j) => {
      const pad = o.inside && !o.inside[i][j];
      tr.append(el("td", { class: pad ? "pad" : null, title: pad ? "padding (zero)" : null, text: fmt(v, 4) }));
    });
    t.append(tr);
  });
  return t;
}

function setSeg(seg, value) {
  for (const b of seg.querySelectorAll("button")) b.classList.toggle("on", b.dataset.value === String(value));
}
function onSeg(seg, fn) {
  seg.addEventListener("click", (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    setSeg(seg, b.dataset.value);
    fn(b.dataset.value);
  });
}

const state = { info: null, view: null };

// ============================================================================ router
const views = {};

function route() {
  const name = (location.hash || "#kernels").slice(1);
  const view = views[name] ? name : "kernels";
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.view === view);
  for (const v of Object.keys(views)) $("view-" + v).hidden = v !== view;
  if (state.view !== view) {
    if (state.view && views[state.view].leave) views[state.view].leave();
    state.view = view;
    showError(null);
    views[view].enter();
  }
}

// ============================================================================ Kernels
const K = {
  catalogue: [], image: { sample: "astronaut" }, label: "", size: 3, name: "sharpen",
  color: "grey", result: null, inImg: null, outImg: null, hover: null, started: false,
};

function parseCell(text) {
  const t = String(text).trim().replace(/−/g, "-");
  if (t === "") return NaN;
  if (/^[-+]?\d*\.?\d+(e[-+]?\d+)?\s*\/\s*[-+]?\d*\.?\d+$/i.test(t)) {
    const [a, b] = t.split("/");
    return parseFloat(a) / parseFloat(b);
  }
  if (!/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(t)) return NaN;
  return parseFloat(t);
}

function fracText(v) {
  if (Number.isInteger(v)) return String(v);
  for (const d of [2, 3, 4, 5, 6, 8, 9, 10, 12, 16, 25, 256]) {
    const n = v * d;
    if (Math.abs(n - Math.round(n)) < 1e-9) return `${Math.round(n)}/${d}`;
  }
  return String(parseFloat(v.toFixed(6)));
}

function kernelGrid(matrix) {
  const grid = $("k-grid");
  grid.innerHTML = "";
  const n = matrix[0].length;
  grid.style.gridTemplateColumns = `repeat(${n}, 1fr)`;
  matrix.forEach((row, i) => row.forEach((v, j) => {
    const inp = el("input", { value: fracText(v), "data-i": i, "data-j": j, "aria-label": `kernel row ${i + 1} column ${j + 1}` });
    inp.classList.toggle("neg", v < 0);
    inp.addEventListener("input", () => {
      const val = parseCell(inp.value);
      inp.style.borderColor = Number.isNaN(val) ? "var(--bad)" : "";
      inp.classList.toggle("neg", val < 0);
      if (K.name !== "custom") { K.name = "custom"; $("k-kernel").value = "custom"; }
      kernelInfo();
      if (!Number.isNaN(val)) applyKernelSoon();
    });
    grid.append(inp);
  }));
  kernelInfo();
}

function gridMatrix() {
  const inputs = [...$("k-grid").querySelectorAll("input")];
  const n = Math.round(Math.sqrt(inputs.length));
  const m = [];
  for (let i = 0; i < n; i++) m.push(inputs.slice(i * n, i * n + n).map((x) => parseCell(x.value)));
  return m;
}

function kernelInfo() {
  const m = gridMatrix();
  const flat = m.flat();
  const info = $("k-kernel-info");
  if (flat.some(Number.isNaN)) { info.textContent = "type numbers or fractions such as 1/9"; return; }
  const sum = flat.reduce((a, b) => a + b, 0);
  const entry = K.catalogue.find((k) => k.name === K.name);
  const alias = entry && entry.aliases.length ? ` (also: ${entry.aliases.join(", ")})` : "";
  info.textContent = `${m.length}×${m[0].length}, Σ weights = ${fmt(sum, 4)}${alias}`;
}

function currentKernel() {
  if (K.name !== "custom") return { kernel: K.name };
  const m = gridMatrix();
  if (m.flat().some(Number.isNaN)) throw new ApiError("the kernel has a cell that is not a number");
  return { matrix: m };
}

function kernelSize() {
  if (K.name === "custom") return K.size;
  const entry = K.catalogue.find((k) => k.name === K.name);
  return entry ? entry.matrix.length : K.size;
}

async function applyKernel() {
  const body = Object.assign({
    image: K.image,
    stride: parseInt($("k-stride").value, 10) || 1,
    padding: Math.max(0, parseInt($("k-padding").value, 10) || 0),
    flip: $("k-flip").checked,
    color: K.color,
    display: $("k-display").value,
  }, currentKernel());
  const res = await api("/api/kernel", { json: body });
  showError(null);
  K.result = res;
  $("k-output").dataset.kernel = JSON.stringify(res.kernel.matrix);
  [K.inImg, K.outImg] = await Promise.all([loadImage(res.input.png), loadImage(res.output.png)]);
  renderKernelView();
  if (K.hover && K.hover.y < res.output.height && K.hover.x < res.output.width) explainPixel(K.hover.y, K.hover.x);
  else { K.hover = null; $("k-pixel").innerHTML = ""; $("k-pixel-title").textContent = "— rest the pointer on the output"; }
}
const applyKernelSoon = debounce(() => applyKernelLatest(), 120);
const applyKernelLatest = latest(applyKernel);

function kernelScales() {
  const r = K.result;
  const P = r.padding;
  const avail = Math.max(200, Math.min(420, $("k-input").parentElement.clientWidth - 34));
  const spanW = r.input.width + 2 * P, spanH = r.input.height + 2 * P;
  const s = Math.min(avail / spanW, avail / spanH);
  const so = Math.min(avail / r.output.width, avail / r.output.height);
  return { P, s, so, spanW, spanH };
}

function renderKernelView() {
  const r = K.result;
  const { P, s, so, spanW, spanH } = kernelScales();
  // input, with the zero padding drawn around it
  const ci = $("k-input");
  const ctx = sizeCanvas(ci, spanW * s, spanH * s);
  ctx.fillStyle = "#d9dce3";
  ctx.fillRect(0, 0, spanW * s, spanH * s);
  if (P > 0) {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, spanW * s, spanH * s);
    ctx.strokeStyle = "rgba(255,255,255,0.35)";
    ctx.lineWidth = 1;
    for (let d = -spanH * s; d < spanW * s; d += 7) { ctx.beginPath(); ctx.moveTo(d, 0); ctx.lineTo(d + spanH * s, spanH * s); ctx.stroke(); }
  }
  ctx.drawImage(K.inImg, P * s, P * s, r.input.width * s, r.input.height * s);
  // output
  const co = $("k-output");
  const octx = sizeCanvas(co, r.output.width * so, r.output.height * so);
  octx.drawImage(K.outImg, 0, 0, r.output.width * so, r.output.height * so);
  const ch = r.input.channels === 1 ? "grey" : "RGB";
  $("k-in-caption").textContent = `— ${r.input.width}×${r.input.height} ${ch}` + (P ? `, zero padding P = ${P} hatched` : "");
  $("k-out-caption").textContent =
    `— ${r.output.width}×${r.output.height}, values ${fmt(r.output.min, 2)} … ${fmt(r.output.max, 2)} (mean ${fmt(r.output.mean, 2)}), shown: ${r.output.display}`;
  const a = r.arithmetic;
  const arith = $("k-arith");
  arith.innerHTML = "";
  for (const ax of [a.width, a.height]) {
    const label = ax.axis === "width" ? "width " : "height";
    arith.append(el("div", {}, `${label}  `, el("span", { text: ax.text.replace(/ = (\d+)$/, " = ") }), el("b", { text: String(ax.out) })));
    if (ax.note) arith.append(el("div", { class: "note", text: ax.note }));
  }
  arith.append(el("div", { class: "note", text:
    `W, H = input size, F = kernel size ${a.width.F}, P = padding ${a.width.P}, S = stride ${a.width.S}; output ${a.width.out}×${a.height.out} (W×H)` }));
  if (K.hover) drawKernelHover();
}

function drawKernelHover() {
  const r = K.result, h = K.hover;
  if (!r || !h) return;
  renderBase();
  const { s, so } = kernelScales();
  const F = r.kernel.applied.length;
  const ctx = $("k-input").getContext("2d");
  const y0 = h.y * r.stride, x0 = h.x * r.stride; // in padded coordinates
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#ff2d55";
  ctx.strokeRect(x0 * s, y0 * s, F * s, F * s);
  ctx.strokeStyle = "rgba(255,255,255,0.9)";
  ctx.lineWidth = 1;
  ctx.strokeRect(x0 * s - 2, y0 * s - 2, F * s + 4, F * s + 4);
  const octx = $("k-output").getContext("2d");
  octx.lineWidth = 2;
  octx.strokeStyle = "#ff2d55";
  octx.strokeRect(h.x * so - 1, h.y * so - 1, so + 2, so + 2);
}

function renderBase() {
  const hover = K.hover;
  K.hover = null;
  renderKernelView();
  K.hover = hover;
}

const explainPixel = latest(async (y, x) => {
  const r = K.result;
  if (!r) return;
  const d = await api(`/api/kernel/${r.token}/pixel?y=${y}&x=${x}`);
  if (K.result !== r) return;
  $("k-pixel-title").textContent =
    `(row ${y}, column ${x}) — its ${d.size[0]}×${d.size[1]} window starts at input (${d.origin[0]}, ${d.origin[1]})`;
  const box = $("k-pixel");
  box.innerHTML = "";
  d.channels.forEach((c, i) => {
    const name = d.names[i];
    box.append(el("div", { class: "eq" },
      matrixTable(c.window, `input window${d.names.length > 1 ? " (" + name + ")" : ""}`, { inside: d.inside }),
      el("span", { class: "op", text: "⊙" }),
      matrixTable(d.kernel, r.kernel.flip ? "kernel, rotated 180° (flip)" : "kernel"),
      el("span", { class: "op", text: "=" }),
      matrixTable(c.products, "products"),
      el("span", { class: "op", text: "→ Σ" }),
      el("div", { class: "result" },
        el("div", {}, "sum = ", el("b", { text: fmt(c.sum, 4) })),
        el("div", { class: "small muted", text: `output[${y}, ${x}]${d.names.length > 1 ? "[" + name + "]" : ""} = ${fmt(c.output, 4)}` }),
      ),
    ));
    box.append(el("div", { class: "expr", text: c.expression }));
  });
});

function kernelPointer(ev) {
  const r = K.result;
  if (!r) return;
  const p = pointer($("k-output"), ev);
  const x = Math.floor((p.x / p.w) * r.output.width), y = Math.floor((p.y / p.h) * r.output.height);
  if (x < 0 || y < 0 || x >= r.output.width || y >= r.output.height) return;
  if (K.hover && K.hover.x === x && K.hover.y === y) return;
  K.hover = { x, y };
  drawKernelHover();
  explainPixel(y, x);
}

async function uploadFile(file) {
  const resp = await api("/api/upload", {
    method: "POST", body: file,
    headers: { "Content-Type": file.type || "application/octet-stream", "X-Filename": encodeURIComponent(file.name || "upload").slice(0, 100) },
  });
  return resp;
}

views.kernels = {
  enter: guard(async () => {
    if (K.started) return;
    K.started = true;
    const [samples, catalogue] = await Promise.all([api("/api/samples"), api("/api/kernels")]);
    K.catalogue = catalogue;
    const box = $("k-samples");
    for (const s of samples) {
      const b = el("button", { title: `${s.title} — ${s.author}; ${s.licence}`, "data-sample": s.name, class: s.name === K.image.sample ? "on" : null },
        el("img", { src: s.url, alt: s.title }));
      b.addEventListener("click", () => {
        for (const o of box.querySelectorAll("button")) o.classList.toggle("on", o === b);
        K.image = { sample: s.name };
        $("k-image-label").textContent = `${s.title} — ${s.author} (${s.licence})`;
        applyKernelLatest();
      });
      box.append(b);
    }
    const first = samples.find((s) => s.name === K.image.sample);
    if (first) $("k-image-label").textContent = `${first.title} — ${first.author} (${first.licence})`;
    const sel = $("k-kernel");
    for (const k of catalogue) sel.append(el("option", { value: k.name, text: `${k.name}  (${k.matrix.length}×${k.matrix[0].length})` }));
    sel.append(el("option", { value: "custom", text: "custom (type your own)" }));
    sel.value = K.name;
    kernelGrid(catalogue.find((k) => k.name === K.name).matrix);
    sel.addEventListener("change", () => {
      K.name = sel.value;
      if (K.name === "custom") {
        const m = gridMatrix();
        if (m.length !== K.size) kernelGrid(Array.from({ length: K.size }, (_, i) => Array.from({ length: K.size }, (_, j) => (i === (K.size - 1) / 2 && j === i ? 1 : 0))));
      } else {
        const m = catalogue.find((k) => k.name === K.name).matrix;
        kernelGrid(m);
        setSeg($("k-size"), m.length);
      }
      applyKernelLatest();
    });
    onSeg($("k-size"), (v) => {
      const n = parseInt(v, 10);
      K.size = n;
      const old = gridMatrix();
      const off = (n - old.length) / 2;
      const m = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => {
        const oi = i - off, oj = j - off;
        return oi >= 0 && oj >= 0 && oi < old.length && oj < old.length && !Number.isNaN(old[oi][oj]) ? old[oi][oj] : 0;
      }));
      K.name = "custom";
      sel.value = "custom";
      kernelGrid(m);
      $("k-padding").value = String(Math.min(5, Math.floor((n - 1) / 2)));
      applyKernelLatest();
    });
    onSeg($("k-color"), (v) => { K.color = v; applyKernelLatest(); });
    for (const id of ["k-stride", "k-padding", "k-flip", "k-display"]) $(id).addEventListener("change", () => applyKernelLatest());
    for (const id of ["k-stride", "k-padding"]) $(id).addEventListener("input", () => applyKernelSoon());
    $("k-pad-valid").addEventListener("click", () => { $("k-padding").value = "0"; applyKernelLatest(); });
    $("k-pad-same").addEventListener("click", () => { $("k-padding").value = String(Math.floor((kernelSize() - 1) / 2)); applyKernelLatest(); });
    $("k-upload").addEventListener("change", guard(async (ev) => {
      const file = ev.target.files[0];
      if (!file) return;
      const up = await uploadFile(file);
      K.image = { upload: up.id };
      for (const o of box.querySelectorAll("button")) o.classList.remove("on");
      $("k-image-label").textContent = `uploaded: ${file.name} (${up.width}×${up.height}, ${fmtInt(up.bytes)} bytes)`;
      ev.target.value = "";
      await applyKernel();
    }));
    $("k-output").addEventListener("mousemove", kernelPointer);
    await applyKernel();
  }),
};

// ============================================================================ Architecture
const A = { started: false, doc: null, highlight: -1 };
const KIND_COLOURS = {
  Conv2d: "#4f7cff", MaxPool2d: "#f59e0b", AvgPool2d: "#f59e0b", AdaptiveAvgPool2d: "#f59e0b",
  Linear: "#10b981", Flatten: "#94a3b8", BatchNorm2d: "#a78bfa", BatchNorm1d: "#a78bfa", LocalResponseNorm: "#a78bfa",
  ReLU: "#f472b6", LeakyReLU: "#f472b6", Tanh: "#f472b6", Sigmoid: "#f472b6", Dropout: "#cbd5e1",
};
const DRAWN = new Set(["Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Linear", "Flatten"]);

async function loadArchitecture() {
  const v = $("a-model").value;
  if (!v) return;
  const [kind, name] = [v.slice(0, v.indexOf(":")), v.slice(v.indexOf(":") + 1)];
  const params = new URLSearchParams();
  params.set(kind === "zoo" ? "model" : "checkpoint", name);
  const shape = $("a-shape").value.trim();
  if (shape) params.set("input_shape", shape);
  const doc = await api("/api/architecture?" + params.toString());
  showError(null);
  A.doc = doc;
  A.highlight = -1;
  renderArchitecture();
}

function renderArchitecture() {
  const d = A.doc;
  $("a-note").textContent = `${d.title}: input ${d.input_shape.join("×")} → output ${d.output_shape.join("×")}`;
  const totals = $("a-totals");
  totals.innerHTML = "";
  const add = (k, v, title) => totals.append(el("div", { class: "total", title: title || "" }, el("div", { class: "k", text: k }), el("div", { class: "v", text: v })));
  add("parameters", fmtInt(d.total_params));
  add("trainable", fmtInt(d.trainable_params));
  add("multiply-accumulates", fmtBig(d.total_macs), `${fmtInt(d.total_macs)} per image`);
  add("input → output", `${d.input_shape.join("×")} → ${d.output_shape.join("×")}`);
  add("layers", String(d.rows.length));
  const t = $("a-table");
  t.innerHTML = "";
  t.append(el("thead", {}, el("tr", {},
    el("th", { text: "layer" }), el("th", { text: "type" }), el("th", { text: "configuration" }), el("th", { class: "num", text: "output shape" }),
    el("th", { class: "num", text: "parameters" }), el("th", { class: "num", text: "MACs" }), el("th", { class: "num", text: "receptive field" }), el("th", { class: "num", text: "jump" }))));
  const body = el("tbody");
  d.rows.forEach((r, i) => {
    const tr = el("tr", { "data-row": i },
      el("td", { class: "detail", text: r.name }),
      el("td", {}, el("span", { class: "chip", style: `background:${KIND_COLOURS[r.kind] || "#cbd5e1"}` }), r.kind),
      el("td", { class: "detail", text: r.detail || "" }),
      el("td", { class: "num", text: r.output_shape.join("×") }),
      el("td", { class: "num", text: fmtInt(r.params) }),
      el("td", { class: "num", text: fmtInt(r.macs) }),
      el("td", { class: "num", text: `${r.rf[0]}×${r.rf[1]}` }),
      el("td", { class: "num", text: r.jump[0] === r.jump[1] ? String(r.jump[0]) : `${r.jump[0]}×${r.jump[1]}` }));
    tr.addEventListener("mouseenter", () => { A.highlight = i; tr.classList.add("hl"); drawStack(); });
    tr.addEventListener("mouseleave", () => { A.highlight = -1; tr.classList.remove("hl"); drawStack(); });
    body.append(tr);
  });
  t.append(body);
  t.append(el("tfoot", {}, el("tr", {}, el("td", { text: "total" }), el("td"), el("td"), el("td"),
    el("td", { class: "num", text: fmtInt(d.total_params) }), el("td", { class: "num", text: fmtInt(d.total_macs) }), el("td"), el("td"))));
  drawStack();
}

function drawStack() {
  const d = A.doc;
  if (!d) return;
  const items = [{ kind: "input", name: "", shape: d.input_shape, row: -1 }];
  d.rows.forEach((r, i) => { if (DRAWN.has(r.kind)) items.push({ kind: r.kind, name: r.name, shape: r.output_shape, row: i }); });
  // the drawn item for a highlighted row: the row itself, or the last drawn layer before it
  let hl = -1;
  if (A.highlight >= 0) items.forEach((it, j) => { if (it.row >= 0 && it.row <= A.highlight) hl = j; });
  const H = 260, base = 190;
  const maxHW = Math.max(...items.map((it) => (it.shape.length === 3 ? it.shape[1] : 1)));
  const maxC = Math.max(...items.map((it) => it.shape[0]));
  const geo = items.map((it) => {
    if (it.shape.length === 3) {
      const [c, h] = it.shape;
      const face = 24 + 120 * Math.sqrt(h / maxHW);
      const depth = 6 + 38 * Math.log2(1 + c) / Math.log2(1 + maxC);
      return { face, depth, w: depth + face * 0.35 + 26 };
    }
    const f = it.shape[0];
    const face = 30 + 120 * Math.log2(1 + f) / Math.log2(1 + Math.max(maxC, f, 10));
    return { face, depth: 8, w: 40 };
  }).map((g) => Object.assign(g, { w: Math.max(g.w, 66) }));
  const W = Math.max(geo.reduce((a, g) => a + g.w + 12, 32), 600);
  const ctx = sizeCanvas($("a-drawing"), W, H);
  ctx.clearRect(0, 0, W, H);
  ctx.font = "11px ui-monospace, DejaVu Sans Mono, monospace";
  ctx.textAlign = "center";
  let sx = 16;
  items.forEach((it, j) => {
    const g = geo[j];
    const colour = it.kind === "input" ? "#475569" : KIND_COLOURS[it.kind] || "#94a3b8";
    const top = base - g.face;
    const dx = g.face * 0.35, dy = g.face * 0.25; // oblique offset of the back face
    const x = sx + (g.w - g.depth - dx) / 2, cx = sx + g.w / 2;
    ctx.globalAlpha = hl === -1 || hl === j ? 1 : 0.35;
    // side and top faces, then the front face (a box of thickness = depth)
    ctx.fillStyle = shade(colour, -0.25);
    ctx.beginPath(); ctx.moveTo(x + g.depth, top); ctx.lineTo(x + g.depth + dx, top - dy); ctx.lineTo(x + g.depth + dx, base - dy); ctx.lineTo(x + g.depth, base); ctx.closePath(); ctx.fill();
    ctx.fillStyle = shade(colour, 0.25);
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x + dx, top - dy); ctx.lineTo(x + g.depth + dx, top - dy); ctx.lineTo(x + g.depth, top); ctx.closePath(); ctx.fill();
    ctx.fillStyle = colour;
    ctx.fillRect(x, top, g.depth, g.face);
    if (hl === j) { ctx.strokeStyle = "#111827"; ctx.lineWidth = 2; ctx.strokeRect(x - 3, top - dy - 3, g.depth + dx + 6, g.face + dy + 6); }
    ctx.fillStyle = "#1d2330";
    ctx.fillText(it.shape.join("×"), cx, base + 18);
    ctx.fillStyle = "#6b7385";
    const short = { Conv2d: "conv", MaxPool2d: "max pool", AvgPool2d: "avg pool", AdaptiveAvgPool2d: "adapt. pool", Linear: "dense", Flatten: "flatten", input: "input" }[it.kind] || it.kind;
    ctx.fillText(short, cx, base + 33);
    ctx.fillText(it.name.length > 10 ? "…" + it.name.slice(-9) : it.name, cx, base + 47);
    ctx.globalAlpha = 1;
    sx += g.w + 12;
  });
}

function shade(hex, amount) {
  const n = parseInt(hex.slice(1), 16);
  const f = (c) => Math.max(0, Math.min(255, Math.round(amount < 0 ? c * (1 + amount) : c + (255 - c) * amount)));
  return `rgb(${f(n >> 16)},${f((n >> 8) & 255)},${f(n & 255)})`;
}

views.architecture = {
  enter: guard(async () => {
    const sel = $("a-model");
    const [models, ckpts] = await Promise.all([api("/api/models"), api("/api/checkpoints")]);
    const prev = sel.value;
    sel.innerHTML = "";
    const gz = el("optgroup", { label: "Zoo models" });
    for (const m of models) gz.append(el("option", { value: "zoo:" + m.name, text: `${m.name}  (${m.input_shape.join("×")})` }));
    sel.append(gz);
    if (ckpts.length) {
      const gc = el("optgroup", { label: "Checkpoints" });
      for (const c of ckpts) gc.append(el("option", { value: "ckpt:" + c.id, text: c.id }));
      sel.append(gc);
    }
    sel.value = prev || "zoo:lenet5";
    if (!sel.value) sel.selectedIndex = 0;
    if (!A.started) {
      A.started = true;
      sel.addEventListener("change", () => { $("a-shape").value = ""; guard(loadArchitecture)(); });
      $("a-shape").addEventListener("change", guard(loadArchitecture));
    }
    await loadArchitecture();
  }),
};

// ============================================================================ Activations
const X = { started: false, ckpt: null, info: null, offset: 0, pageSize: 24, result: null, inputImg: null,
  selectedTest: null, source: "test", lastImage: null, layerImgs: [], hoverBox: null };

async function loadCheckpointList() {
  const ckpts = await api("/api/checkpoints");
  const sel = $("x-checkpoint");
  const prev = sel.value;
  sel.innerHTML = "";
  for (const c of ckpts) sel.append(el("option", { value: c.id, text: c.id }));
  $("x-empty").hidden = ckpts.length > 0;
  $("x-main").hidden = ckpts.length === 0;
  if (!ckpts.length) {
    $("x-empty").textContent = `No checkpoints: train a model into ${state.info ? state.info.runs_dir : "the runs directory"}, or start the explorer with --checkpoint FILE.`;
    return false;
  }
  sel.value = ckpts.some((c) => c.id === prev) ? prev : ckpts[0].id;
  return true;
}

async function selectCheckpoint() {
  const id = $("x-checkpoint").value;
  const info = await api("/api/checkpoint?checkpoint=" + encodeURIComponent(id));
  X.ckpt = id;
  X.info = info;
  X.offset = 0;
  const norm = info.normalization;
  $("x-meta").textContent =
    `${info.architecture} · input ${info.input_shape.join("×")} · ${info.classes.length} classes · epoch ${info.epoch ?? "–"}` +
    ` · dataset ${info.dataset || (info.test_images && info.test_images.dataset) || "unknown"}` +
    ` · normalisation mean ${norm.mean.map((v) => fmt(v, 3)).join(",")} std ${norm.std.map((v) => fmt(v, 3)).join(",")}`;
  const testBtn = $("x-source").querySelector('[data-value="test"]');
  testBtn.disabled = !info.test_images.available;
  testBtn.title = info.test_images.available ? "" : info.test_images.message;
  if (!info.test_images.available && X.source === "test") switchSource("upload");
  if (info.test_images.available) await loadTests();
  if (X.lastImage && X.lastImage.test === undefined) await runActivations(X.lastImage);
  else if (info.test_images.available) await runActivations({ test: X.selectedTest ?? 0 });
  else {
    X.result = null;
    X.lastImage = null;
    $("x-preds").innerHTML = "";
    $("x-filters-card").hidden = true;
    $("x-layers").innerHTML = "";
    $("x-layers").append(el("div", { class: "card empty" },
      el("div", { text: "No test images for this checkpoint: " + info.test_images.message }),
      el("div", { text: "Upload an image or draw one to see every layer's feature maps." })));
  }
}

async function loadTests() {
  const d = await api(`/api/testimages?checkpoint=${encodeURIComponent(X.ckpt)}&offset=${X.offset}&limit=${X.pageSize}`);
  const box = $("x-tests");
  box.innerHTML = "";
  for (const it of d.items) {
    const b = el("button", { title: `#${it.index}: ${it.class}`, "data-index": it.index, class: X.selectedTest === it.index ? "on" : null },
      el("img", { src: it.png, alt: it.class }));
    b.addEventListener("click", guard(async () => {
      X.selectedTest = it.index;
      for (const o of box.querySelectorAll("button")) o.classList.toggle("on", o === b);
      await runActivations({ test: it.index });
    }));
    box.append(b);
  }
  $("x-page").textContent = `${d.dataset}: ${d.offset + 1}–${d.offset + d.items.length} of ${fmtInt(d.count)}`;
  X.testCount = d.count;
}

function switchSource(v) {
  X.source = v;
  setSeg($("x-source"), v);
  for (const s of ["test", "upload", "draw"]) $("x-src-" + s).hidden = s !== v;
}

async function runActivations(image) {
  if (!X.ckpt) return;
  X.lastImage = image;
  const gen = (X.gen = (X.gen || 0) + 1);
  const res = await api("/api/activations", { json: { checkpoint: X.ckpt, image, invert: $("x-invert").checked } });
  if (gen !== X.gen) return; // a later request (another image or checkpoint) has been sent meanwhile
  showError(null);
  X.result = res;
  X.inputImg = await loadImage(res.input.png);
  X.hoverBox = null;
  drawModelInput();
  $("x-input-caption").textContent = `${res.input.width}×${res.input.height}, ${res.label}`;
  $("x-hover").textContent = "Rest the pointer on a unit of a feature map: its value, and its receptive field outlined here. Click a unit of a convolution to see how it was computed.";
  $("x-unit-card").hidden = true;
  renderPredictions(res);
  await renderFilters(res.filters);
  await renderLayers(res);
}

function drawModelInput() {
  const res = X.result;
  const size = Math.min(268, Math.max(168, 6 * res.input.width));
  const ctx = sizeCanvas($("x-input"), size, size * res.input.height / res.input.width);
  const sx = size / res.input.width, sy = (size * res.input.height / res.input.width) / res.input.height;
  ctx.drawImage(X.inputImg, 0, 0, res.input.width * sx, res.input.height * sy);
  const b = X.hoverBox;
  if (b) {
    ctx.fillStyle = "rgba(255, 45, 85, 0.18)";
    ctx.fillRect(b.left * sx, b.top * sy, (b.right - b.left) * sx, (b.bottom - b.top) * sy);
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#ff2d55";
    ctx.strokeRect(b.left * sx + 1, b.top * sy + 1, (b.right - b.left) * sx - 2, (b.bottom - b.top) * sy - 2);
    if (b.unclipped && !b.whole) {
      const [t, l, bo, r] = b.unclipped;
      ctx.setLineDash([4, 3]);
      ctx.lineWidth = 1;
      ctx.strokeStyle = "rgba(255,255,255,0.8)";
      ctx.strokeRect(l * sx, t * sy, (r - l) * sx, (bo - t) * sy);
      ctx.setLineDash([]);
    }
  }
}

function renderPredictions(res) {
  const box = $("x-preds");
  box.innerHTML = "";
  box.append(el("div", { class: "pred head" }, el("span", { text: "class" }), el("span", { text: "softmax" }), el("span", { class: "p", text: "p" }), el("span", { class: "logit", text: "logit" })));
  res.predictions.forEach((p, i) => {
    box.append(el("div", { class: "pred" + (i === 0 ? " top" : ""), title: `class ${p.index}: softmax ${p.probability}, logit ${p.logit}` },
      el("span", { class: "name", text: p.class }),
      el("span", { class: "bar" }, el("span", { style: `width:${Math.max(0.5, 100 * p.probability).toFixed(2)}%` })),
      el("span", { class: "p", text: fmtPct(p.probability) }),
      el("span", { class: "logit", text: fmt(p.logit, 3) })));
  });
}

function tileScale(layout, target) {
  return Math.max(1, Math.min(12, Math.floor(target / Math.max(layout.tile_w || 1, 1))));
}

async function renderFilters(f) {
  const card = $("x-filters-card");
  card.hidden = !f;
  if (!f) return;
  $("x-filter-detail").textContent = "Rest the pointer on a filter to see its weights.";
  $("x-filters-caption").textContent =
    `${f.name}: ${f.shape.join("×")} (out × in × kH × kW)` + (f.layout.shown < f.layout.total ? `, first ${f.layout.shown} shown` : "") +
    (f.coloured ? " — RGB, each filter scaled to ±max" : " — blue < 0 < red");
  const im = await loadImage(f.png);
  const s = tileScale(f.layout, 60);
  const c = $("x-filters");
  const ctx = sizeCanvas(c, f.layout.width * s, f.layout.height * s);
  ctx.drawImage(im, 0, 0, f.layout.width * s, f.layout.height * s);
  c.onmousemove = (ev) => {
    const hit = gridHit(f.layout, c, ev);
    if (!hit || hit.c >= f.layout.shown) return;
    const w = f.weights ? f.weights[hit.c] : null;
    const box = $("x-filter-detail");
    box.innerHTML = "";
    box.append(el("div", { text: `filter ${hit.c}` + (f.bias ? `, bias ${fmt(f.bias[hit.c], 4)}` : "") }));
    if (w) w.forEach((m, ci) => box.append(matrixTable(m, w.length > 1 ? `input channel ${ci}` : "weights")));
  };
}

/** Which tile/unit of a grid picture the pointer is on: {c, y, x} (or null between tiles). */
function gridHit(layout, canvas, ev) {
  const p = pointer(canvas, ev);
  const px = Math.floor((p.x / p.w) * layout.width), py = Math.floor((p.y / p.h) * layout.height);
  if (layout.kind === "vector") {
    const idx = py * layout.cols + px;
    return idx < layout.total && px >= 0 && py >= 0 ? { c: idx, y: 0, x: 0 } : null;
  }
  const cw = layout.tile_w + layout.gap, chh = layout.tile_h + layout.gap;
  const col = Math.floor(px / cw), row = Math.floor(py / chh);
  const x = px - col * cw, y = py - row * chh;
  if (x < 0 || y < 0 || x >= layout.tile_w || y >= layout.tile_h || col >= layout.cols) return null;
  const c = row * layout.cols + col;
  return c < layout.shown ? { c, y, x } : null;
}

async function renderLayers(res) {
  const wrap = $("x-layers");
  wrap.innerHTML = "";
  const imgs = await Promise.all(res.layers.map((L) => (L.picture ? loadImage(L.picture.png) : null)));
  res.layers.forEach((L, i) => {
    const st = L.stats;
    const card = el("div", { class: "card layer", "data-layer": i },
      el("div", { class: "layer-head" },
        el("span", { class: "nm", text: L.name }), el("span", { class: "kind", text: L.kind }), el("span", { class: "stage", text: L.stage }),
        el("span", { class: "muted", text: L.shape.join("×") + (L.picture && L.picture.layout.shown < L.picture.layout.total ? ` (first ${L.picture.layout.shown} channels shown)` : "") }),
        el("span", { class: "stats", text: `min ${fmt(st.min, 3)} · max ${fmt(st.max, 3)} · mean ${fmt(st.mean, 3)} · zeros ${fmtPct(st.zero_fraction)}` })));
    if (L.picture) {
      const lay = L.picture.layout;
      const avail = Math.max(300, wrap.clientWidth - 34);
      let s = lay.kind === "vector" ? Math.max(4, Math.min(18, Math.floor(560 / lay.cols))) : tileScale(lay, lay.tile_w >= 40 ? lay.tile_w * 2 : 84);
      s = Math.max(1, Math.min(s, Math.floor(avail / lay.width)));
      const c = el("canvas", { class: "pix hoverable" });
      const ctx = sizeCanvas(c, lay.width * s, lay.height * s);
      ctx.drawImage(imgs[i], 0, 0, lay.width * s, lay.height * s);
      const redraw = (hit) => {
        ctx.drawImage(imgs[i], 0, 0, lay.width * s, lay.height * s);
        if (!hit) return;
        ctx.strokeStyle = "#00e0ff";
        ctx.lineWidth = 2;
        if (lay.kind === "vector") {
          ctx.strokeRect((hit.c % lay.cols) * s, Math.floor(hit.c / lay.cols) * s, s, s);
        } else {
          const col = hit.c % lay.cols, row = Math.floor(hit.c / lay.cols);
          const x0 = (col * (lay.tile_w + lay.gap) + hit.x) * s, y0 = (row * (lay.tile_h + lay.gap) + hit.y) * s;
          ctx.strokeRect(x0, y0, s, s);
        }
      };
      let lastKey = "";
      c.addEventListener("mousemove", (ev) => {
        const hit = gridHit(lay, c, ev);
        if (!hit) return;
        const key = `${hit.c},${hit.y},${hit.x}`;
        if (key === lastKey) return;
        lastKey = key;
        redraw(hit);
        hoverUnit(i, hit);
      });
      c.addEventListener("mouseleave", () => { lastKey = ""; redraw(null); });
      if (L.kind === "Conv2d" || (L.kind === "ReLU" && i > 0 && res.layers[i - 1].kind === "Conv2d")) {
        c.addEventListener("click", (ev) => {
          const hit = gridHit(lay, c, ev);
          if (hit) explainUnit(i, hit);
        });
        c.title = "click a unit: how it was computed";
      }
      card.append(c);
      card.append(el("div", { class: "small muted", text: L.picture.signed
        ? `colour: blue < 0 < red, ±${fmt(L.picture.scale, 3)} (one scale for the whole layer)`
        : `colour: 0 (black) … ${fmt(L.picture.scale, 3)} (bright), one scale for the whole layer` }));
    }
    wrap.append(card);
  });
}

const hoverUnit = latest(async (layer, hit) => {
  const res = X.result;
  if (!res) return;
  const u = await api(`/api/activations/${res.token}/unit?layer=${layer}&c=${hit.c}&y=${hit.y}&x=${hit.x}`);
  if (X.result !== res) return;
  X.hoverBox = u.box;
  drawModelInput();
  const b = u.box;
  const L = res.layers[layer];
  const where = u.unit.length === 3 ? `channel ${u.unit[0]}, row ${u.unit[1]}, column ${u.unit[2]}` : `unit ${u.unit[0]}`;
  const rf = b.whole ? "the whole input (after flattening every unit sees every pixel)"
    : `rows ${b.top}–${b.bottom - 1}, columns ${b.left}–${b.right - 1} (${L.rf.size[0]}×${L.rf.size[1]} window` +
      (b.unclipped[0] < 0 || b.unclipped[1] < 0 || b.unclipped[2] > res.input.height || b.unclipped[3] > res.input.width ? ", partly in the padding" : "") + ")";
  const box = $("x-hover");
  box.innerHTML = "";
  box.append(el("div", {}, el("b", { text: `${u.name} ${u.kind}` }), ` ${where}`));
  box.append(el("div", {}, "value ", el("b", { text: fmt(u.value, 5) })));
  box.append(el("div", { text: "receptive field: " + rf }));
});

/** Lecture E2: a convolution's unit as Σ over input channels of window ⊙ kernel, plus the bias, then the ReLU. */
const explainUnit = latest(async (layer, hit) => {
  const res = X.result;
  if (!res) return;
  const u = await api(`/api/activations/${res.token}/unit?layer=${layer}&c=${hit.c}&y=${hit.y}&x=${hit.x}&explain=true`);
  if (X.result !== res) return;
  const d = u.computation;
  const card = $("x-unit-card");
  card.hidden = false;
  card.dataset.layer = String(d.layer);
  card.dataset.unit = d.unit.join(",");
  const [c, y, x] = d.unit;
  const pad = d.padding.flat().some((p) => p > 0) ? `, padding ${d.padding[0][0]}/${d.padding[0][1]} rows, ${d.padding[1][0]}/${d.padding[1][1]} columns (zeros)` : "";
  $("x-unit-title").textContent = `— layer ${d.name} (Conv2d), channel ${c}, row ${y}, column ${x}: its ${d.kernel_size.join("×")} window starts at input (${d.origin.join(", ")}), stride ${d.stride.join("×")}${pad}` +
    (d.dilation.some((v) => v > 1) ? `, dilation ${d.dilation.join("×")}` : "") + (d.flip ? ", kernel rotated 180° (flip)" : "");
  const box = $("x-unit");
  box.innerHTML = "";
  if (d.note) box.append(el("div", { class: "small muted", id: "x-unit-note", text: d.note }));
  const rows = el("div", { class: "unit-channels" });
  for (const ch of d.channels) {
    rows.append(el("div", { class: "eq unit-channel", "data-channel": ch.channel },
      matrixTable(ch.window, `input channel ${ch.channel}: window`, { inside: d.inside }),
      el("span", { class: "op", text: "⊙" }),
      matrixTable(ch.kernel, `kernel [${c}, ${ch.channel}]`),
      el("span", { class: "op", text: "→ Σ" }),
      el("div", { class: "result" }, el("b", { text: fmt(ch.sum, 5) }))));
  }
  box.append(rows);
  const sums = d.channels.map((ch) => fmt(ch.sum, 4)).join(" + ") + (d.note ? ` + ${fmt(d.rest_sum, 4)} (the other channels)` : "");
  const table = el("table", { class: "table unit-total", id: "x-unit-total" },
    el("tr", {}, el("th", { text: `Σ over ${d.in_channels} input channel${d.in_channels > 1 ? "s" : ""}` }), el("td", { class: "num", text: fmt(d.channel_sum, 6) }), el("td", { class: "detail", text: sums })),
    el("tr", {}, el("th", { text: "+ bias" }), el("td", { class: "num", text: fmt(d.bias, 6) }), el("td")),
    el("tr", {}, el("th", { text: "= total" }), el("td", { class: "num" }, el("b", { id: "x-unit-value", text: fmt(d.total, 6) })),
      el("td", { class: "detail", text: `the forward pass recorded ${fmt(d.recorded, 6)} (difference ${fmt(d.difference, 2)})` })));
  if (d.relu) {
    table.append(el("tr", {}, el("th", { text: "ReLU: max(0, total)" }), el("td", { class: "num" }, el("b", { id: "x-unit-relu", text: fmt(d.relu.value, 6) })),
      el("td", { class: "detail", text: `layer ${d.relu.name} recorded ${fmt(d.relu.recorded, 6)}` })));
  }
  box.append(table);
  card.scrollIntoView({ block: "nearest" });
});

function setupDrawing() {
  const c = $("x-draw");
  const ctx = c.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, c.width, c.height); };
  clear();
  let drawing = false, last = null;
  const pos = (ev) => { const p = pointer(c, ev); return { x: (p.x / p.w) * c.width, y: (p.y / p.h) * c.height }; };
  c.addEventListener("pointerdown", (ev) => { drawing = true; last = pos(ev); c.setPointerCapture(ev.pointerId); stroke(last, last); });
  c.addEventListener("pointermove", (ev) => { if (!drawing) return; const p = pos(ev); stroke(last, p); last = p; });
  const end = () => { if (!drawing) return; drawing = false; predictDrawing(); };
  c.addEventListener("pointerup", end);
  c.addEventListener("pointercancel", end);
  function stroke(a, b) {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 16;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(a.x, a.y); ctx.lineTo(b.x, b.y); ctx.stroke();
  }
  $("x-clear").addEventListener("click", clear);
  $("x-predict").addEventListener("click", () => predictDrawing());
}
const predictDrawing = latest(async () => { await runActivations({ drawing: $("x-draw").toDataURL("image/png") }); });

views.activations = {
  enter: guard(async () => {
    if (!X.started) {
      X.started = true;
      onSeg($("x-source"), (v) => switchSource(v));
      $("x-checkpoint").addEventListener("change", guard(selectCheckpoint));
      $("x-prev").addEventListener("click", guard(async () => { X.offset = Math.max(0, X.offset - X.pageSize); await loadTests(); }));
      $("x-next").addEventListener("click", guard(async () => {
        if (X.offset + X.pageSize < (X.testCount || 0)) { X.offset += X.pageSize; await loadTests(); }
      }));
      $("x-upload").addEventListener("change", guard(async (ev) => {
        const file = ev.target.files[0];
        if (!file) return;
        const up = await uploadFile(file);
        $("x-upload-label").textContent = `${file.name} (${up.width}×${up.height})`;
        ev.target.value = "";
        await runActivations({ upload: up.id });
      }));
      $("x-invert").addEventListener("change", guard(async () => { if (X.lastImage) await runActivations(X.lastImage); }));
      setupDrawing();
    }
    const any = await loadCheckpointList();
    if (any && X.ckpt !== $("x-checkpoint").value) await selectCheckpoint();
  }),
};

// ============================================================================ Training
const PALETTE = ["#4f46e5", "#e11d48", "#059669", "#d97706", "#0891b2", "#7c3aed", "#65a30d", "#db2777"];
const T = { runs: [], selected: new Set(), histories: {}, colours: {}, timer: null, started: false, hoverEpoch: null };

function colourOf(name) {
  if (!T.colours[name]) T.colours[name] = PALETTE[Object.keys(T.colours).length % PALETTE.length];
  return T.colours[name];
}

async function refreshRuns() {
  const d = await api("/api/runs");
  T.runs = d.runs;
  $("t-dir").textContent = d.runs_dir;
  if (!T.started) {
    T.started = true;
    for (const r of d.runs) T.selected.add(r.name);
  }
  for (const r of d.runs) if (!(r.name in T.histories)) T.selected.add(r.name);
  await Promise.all(d.runs.filter((r) => T.selected.has(r.name)).map(async (r) => {
    const old = T.histories[r.name];
    const since = old ? `?since=${old.mtime_ns}` : "";
    const h = await api(`/api/runs/${encodeURIComponent(r.name)}${since}`);
    if (!h.unchanged) T.histories[r.name] = h;
  }));
  for (const k of Object.keys(T.histories)) if (!d.runs.some((r) => r.name === k)) delete T.histories[k];
  renderRuns();
  renderCharts();
  renderRunTable();
  $("t-updated").textContent = `updated ${new Date().toLocaleTimeString()} · refreshes every 2 s`;
}

function renderRuns() {
  const box = $("t-runs");
  box.innerHTML = "";
  if (!T.runs.length) box.append(el("div", { class: "muted small", text: "No runs yet: each run is a folder with a history.json (glassnet train writes one)." }));
  for (const r of T.runs) {
    const cb = el("input", { type: "checkbox" });
    cb.checked = T.selected.has(r.name);
    const item = el("label", { class: "run", "data-run": r.name },
      cb,
      el("span", { class: "nm" }, el("span", { class: "swatch", style: `background:${colourOf(r.name)}` }), r.name,
        el("span", { class: `badge ${r.status}`, text: r.status })),
      el("span", { class: "sub", text: `epoch ${r.epochs_done}${r.epochs_planned ? "/" + r.epochs_planned : ""}` +
        (r.best && r.best.val_acc !== null ? ` · best val ${fmtPct(r.best.val_acc)} @${r.best.epoch}` : "") +
        (r.architecture ? ` · ${r.architecture}` : "") + (r.dataset ? ` on ${r.dataset}` : "") }),
      r.message ? el("span", { class: "sub", style: "color:var(--bad)", text: r.message }) : null);
    cb.addEventListener("change", guard(async () => {
      if (cb.checked) T.selected.add(r.name); else T.selected.delete(r.name);
      await refreshRuns();
    }));
    box.append(item);
  }
}

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const span = hi - lo, step0 = span / Math.max(1, n);
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) || 10 * mag;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(parseFloat(v.toPrecision(10)));
  return ticks;
}

function drawChart(canvas, metric) {
  const W = canvas.parentElement.clientWidth - 32, H = 300;
  const ctx = sizeCanvas(canvas, W, H);
  ctx.imageSmoothingEnabled = true;
  const m = { l: 52, r: 14, t: 10, b: 36 };
  const series = [];
  for (const name of T.selected) {
    const h = T.histories[name];
    if (!h) continue;
    const c = colourOf(name);
    const stepKey = metric === "loss" ? "loss" : "acc";
    series.push({ name, colour: c, kind: "step", pts: h.steps.filter((s) => s[stepKey] !== null && s.epoch !== null).map((s) => [s.epoch, s[stepKey]]) });
    series.push({ name, colour: c, kind: "train", pts: h.epochs.filter((e) => e["train_" + metric] !== null).map((e) => [e.epoch, e["train_" + metric]]) });
    series.push({ name, colour: c, kind: "val", pts: h.epochs.filter((e) => e["val_" + metric] !== null).map((e) => [e.epoch, e["val_" + metric]]) });
  }
  const all = series.flatMap((s) => s.pts);
  ctx.clearRect(0, 0, W, H);
  ctx.font = "11px system-ui, DejaVu Sans, sans-serif";
  if (!all.length) {
    ctx.fillStyle = "#6b7385"; ctx.textAlign = "center";
    ctx.fillText("no data yet", W / 2, H / 2);
    return null;
  }
  let x0 = 0, x1 = Math.max(1, ...all.map((p) => p[0]));
  let y0 = Math.min(...all.map((p) => p[1])), y1 = Math.max(...all.map((p) => p[1]));
  if (metric === "acc") { y0 = Math.max(0, Math.min(y0, 1) - 0.02); y1 = Math.min(1, y1 + 0.02); if (y1 - y0 < 0.05) y0 = Math.max(0, y1 - 0.05); }
  else { y0 = Math.max(0, y0 - 0.05 * (y1 - y0)); y1 = y1 + 0.05 * (y1 - y0 || 1); }
  const X = (v) => m.l + ((v - x0) / (x1 - x0)) * (W - m.l - m.r);
  const Y = (v) => H - m.b - ((v - y0) / (y1 - y0)) * (H - m.t - m.b);
  // grid and axes
  ctx.strokeStyle = "#eceef3"; ctx.fillStyle = "#6b7385"; ctx.lineWidth = 1;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (const t of niceTicks(y0, y1, 5)) {
    ctx.beginPath(); ctx.moveTo(m.l, Y(t)); ctx.lineTo(W - m.r, Y(t)); ctx.stroke();
    ctx.fillText(metric === "acc" ? (100 * t).toFixed(0) + "%" : fmt(t, 3), m.l - 6, Y(t));
  }
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (const t of niceTicks(x0, x1, 8)) {
    ctx.beginPath(); ctx.moveTo(X(t), m.t); ctx.lineTo(X(t), H - m.b); ctx.stroke();
    ctx.fillText(String(t), X(t), H - m.b + 6);
  }
  ctx.fillText("epoch", (m.l + W - m.r) / 2, H - 14);
  // series
  for (const s of series) {
    if (!s.pts.length) continue;
    ctx.strokeStyle = s.colour;
    ctx.globalAlpha = s.kind === "step" ? 0.22 : 1;
    ctx.lineWidth = s.kind === "step" ? 1 : 2.2;
    ctx.setLineDash(s.kind === "val" ? [6, 4] : []);
    ctx.beginPath();
    s.pts.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
    ctx.stroke();
    ctx.setLineDash([]);
    if (s.kind !== "step") {
      ctx.fillStyle = s.kind === "val" ? "#fff" : s.colour;
      for (const p of s.pts) { ctx.beginPath(); ctx.arc(X(p[0]), Y(p[1]), 3, 0, 2 * Math.PI); ctx.fill(); ctx.stroke(); }
    }
    ctx.globalAlpha = 1;
  }
  if (T.hoverEpoch !== null) {
    ctx.strokeStyle = "rgba(17,24,39,0.4)"; ctx.setLineDash([3, 3]);
    ctx.beginPath(); ctx.moveTo(X(T.hoverEpoch), m.t); ctx.lineTo(X(T.hoverEpoch), H - m.b); ctx.stroke(); ctx.setLineDash([]);
  }
  return { X, x0, x1, m, W };
}

function renderCharts() {
  T.geo = { loss: drawChart($("t-loss"), "loss"), acc: drawChart($("t-acc"), "acc") };
  const leg = $("t-legend");
  leg.innerHTML = "";
  for (const name of T.selected) if (T.histories[name]) leg.append(el("span", {}, el("i", { style: `border-color:${colourOf(name)}` }), name));
  leg.append(el("span", {}, el("i", { style: "border-color:#6b7385" }), "train (per epoch)"));
  leg.append(el("span", {}, el("i", { class: "dash", style: "border-color:#6b7385" }), "validation"));
  leg.append(el("span", {}, el("i", { style: "border-color:#6b7385;opacity:.3" }), "per step"));
}

function chartHover(canvas, metric, ev) {
  const g = T.geo && T.geo[metric];
  if (!g) return;
  const p = pointer(canvas, ev);
  const v = g.x0 + ((p.x - g.m.l) / (g.W - g.m.l - g.m.r)) * (g.x1 - g.x0);
  const epoch = Math.max(1, Math.round(v));
  T.hoverEpoch = epoch;
  renderCharts();
  const lines = [`epoch ${epoch}`];
  for (const name of T.selected) {
    const h = T.histories[name];
    const e = h && h.epochs.find((x) => x.epoch === epoch);
    if (!e) continue;
    const f = metric === "loss" ? (x) => fmt(x, 4) : fmtPct;
    lines.push(`${name}: train ${f(e["train_" + metric])}  val ${f(e["val_" + metric])}`);
  }
  const tip = $("tooltip");
  tip.textContent = lines.join("\n");
  tip.hidden = false;
  tip.style.left = ev.clientX + 14 + "px";
  tip.style.top = ev.clientY + 10 + "px";
}

function renderRunTable() {
  const t = $("t-table");
  t.innerHTML = "";
  t.append(el("thead", {}, el("tr", {}, ...["run", "status", "epochs", "train loss", "train acc", "val loss", "val acc", "best val acc", "lr", "s / epoch"]
    .map((h, i) => el("th", { class: i >= 2 ? "num" : null, text: h })))));
  const body = el("tbody");
  for (const r of T.runs) {
    const l = r.last || {};
    body.append(el("tr", {},
      el("td", {}, el("span", { class: "chip", style: `background:${colourOf(r.name)}` }), r.name),
      el("td", {}, el("span", { class: `badge ${r.status}`, text: r.status })),
      el("td", { class: "num", text: `${r.epochs_done}${r.epochs_planned ? "/" + r.epochs_planned : ""}` }),
      el("td", { class: "num", text: fmt(l.train_loss, 4) }),
      el("td", { class: "num", text: fmtPct(l.train_acc) }),
      el("td", { class: "num", text: fmt(l.val_loss, 4) }),
      el("td", { class: "num", text: fmtPct(l.val_acc) }),
      el("td", { class: "num", text: r.best && r.best.val_acc !== null ? `${fmtPct(r.best.val_acc)} (epoch ${r.best.epoch})` : "–" }),
      el("td", { class: "num", text: fmt(l.lr, 5) }),
      el("td", { class: "num", text: fmt(l.seconds, 1) })));
  }
  t.append(body);
}

views.training = {
  enter: guard(async () => {
    if (!T.bound) {
      T.bound = true;
      for (const [id, metric] of [["t-loss", "loss"], ["t-acc", "acc"]]) {
        const c = $(id);
        c.addEventListener("mousemove", (ev) => chartHover(c, metric, ev));
        c.addEventListener("mouseleave", () => { T.hoverEpoch = null; $("tooltip").hidden = true; renderCharts(); });
      }
      window.addEventListener("resize", debounce(() => { if (state.view === "training") renderCharts(); }, 150));
    }
    await refreshRuns();
    clearInterval(T.timer);
    T.timer = setInterval(guard(refreshRuns), 2000);
  }),
  leave: () => { clearInterval(T.timer); T.timer = null; $("tooltip").hidden = true; },
};

// ============================================================================ shared by the later views
/** Fill a <select> with checkpoints, pretrained zoo models and (optionally) zoo models with random weights.
 *  Values: "ckpt:ID", "pre:NAME", "zoo:NAME"; returns how many checkpoints there are. */
async function fillModelSelect(sel, opts) {
  const o = Object.assign({ pretrained: true, zoo: true }, opts || {});
  const [ckpts, models] = await Promise.all([api("/api/checkpoints"), api("/api/models")]);
  const prev = sel.value;
  sel.innerHTML = "";
  if (ckpts.length) {
    const g = el("optgroup", { label: "Checkpoints" });
    for (const c of ckpts) g.append(el("option", { value: "ckpt:" + c.id, text: c.id }));
    sel.append(g);
  }
  if (o.pretrained) {
    const g = el("optgroup", { label: "Pretrained (ImageNet)" });
    for (const m of models.filter((m) => m.pretrained)) g.append(el("option", { value: "pre:" + m.name, text: `${m.name} (ImageNet weights)` }));
    if (g.children.length) sel.append(g);
  }
  if (o.zoo) {
    const g = el("optgroup", { label: "Zoo (random weights)" });
    for (const m of models) g.append(el("option", { value: "zoo:" + m.name, text: `${m.name}  (${m.input_shape.join("×")})` }));
    sel.append(g);
  }
  const values = [...sel.querySelectorAll("option")].map((x) => x.value);
  sel.value = values.includes(prev) ? prev : (o.initial && values.includes(o.initial) ? o.initial : values[0]);
  return ckpts.length;
}

/** The request fields naming the model a select's value stands for. */
function sourceOf(value) {
  const i = value.indexOf(":");
  const kind = value.slice(0, i), name = value.slice(i + 1);
  if (kind === "ckpt") return { checkpoint: name };
  return { model: name, pretrained: kind === "pre" };
}
function sourceQuery(value) {
  const s = sourceOf(value);
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(s)) q.set(k, String(v));
  return q.toString();
}

/** An image chooser (test images of a checkpoint, the bundled photos, an upload) built inside `box`.
 *  `onPick(imageRef, label)` runs when the user picks one. */
function makeImagePicker(box, prefix, onPick) {
  const P = { ckpt: null, offset: 0, pageSize: 24, count: 0, source: "test", selected: 0, hasTests: false };
  box.innerHTML = "";
  const seg = el("div", { class: "seg", id: prefix + "-source" },
    el("button", { "data-value": "test", class: "on" }, "Test image"), el("button", { "data-value": "sample" }, "Photo"),
    el("button", { "data-value": "upload" }, "Upload"));
  const thumbs = el("div", { class: "thumbs", id: prefix + "-tests" });
  const pageLabel = el("span", { class: "small muted" });
  const prev = el("button", { class: "ghost", title: "previous page" }, "◀");
  const next = el("button", { class: "ghost", title: "next page" }, "▶");
  const srcTest = el("div", {}, thumbs, el("div", { class: "pager" }, prev, pageLabel, next));
  const samples = el("div", { class: "samples", id: prefix + "-samples" });
  const srcSample = el("div", { hidden: true }, samples);
  const file = el("input", { type: "file", id: prefix + "-upload", accept: "image/*" });
  const upLabel = el("div", { class: "small muted", id: prefix + "-upload-label" });
  const srcUpload = el("div", { hidden: true }, el("label", { class: "button file" }, "Choose an image…", file), upLabel);
  box.append(seg, srcTest, srcSample, srcUpload);
  const panes = { test: srcTest, sample: srcSample, upload: srcUpload };
  function show(v) {
    P.source = v;
    setSeg(seg, v);
    for (const [k, pane] of Object.entries(panes)) pane.hidden = k !== v;
  }
  onSeg(seg, (v) => show(v));
  async function loadTests() {
    const d = await api(`/api/testimages?checkpoint=${encodeURIComponent(P.ckpt)}&offset=${P.offset}&limit=${P.pageSize}`);
    thumbs.innerHTML = "";
    for (const it of d.items) {
      const b = el("button", { title: `#${it.index}: ${it.class}`, "data-index": it.index, class: P.selected === it.index ? "on" : null },
        el("img", { src: it.png, alt: it.class }));
      b.addEventListener("click", () => {
        P.selected = it.index;
        for (const o of thumbs.querySelectorAll("button")) o.classList.toggle("on", o === b);
        onPick({ test: it.index }, `test image ${it.index} (${it.class})`);
      });
      thumbs.append(b);
    }
    pageLabel.textContent = `${d.dataset}: ${d.offset + 1}–${d.offset + d.items.length} of ${fmtInt(d.count)}`;
    P.count = d.count;
  }
  prev.addEventListener("click", guard(async () => { P.offset = Math.max(0, P.offset - P.pageSize); await loadTests(); }));
  next.addEventListener("click", guard(async () => { if (P.offset + P.pageSize < P.count) { P.offset += P.pageSize; await loadTests(); } }));
  file.addEventListener("change", guard(async (ev) => {
    const f = ev.target.files[0];
    if (!f) return;
    const up = await uploadFile(f);
    upLabel.textContent = `${f.name} (${up.width}×${up.height})`;
    ev.target.value = "";
    onPick({ upload: up.id }, `upload ${f.name}`);
  }));
  (async () => {
    const list = await api("/api/samples");
    for (const s of list) {
      const b = el("button", { title: `${s.title} — ${s.author}; ${s.licence}`, "data-sample": s.name }, el("img", { src: s.url, alt: s.title }));
      b.addEventListener("click", () => {
        for (const o of samples.querySelectorAll("button")) o.classList.toggle("on", o === b);
        onPick({ sample: s.name }, `sample ${s.name}`);
      });
      samples.append(b);
    }
  })().catch(showError);
  return {
    /** Point the picker at a checkpoint's test set (null: a zoo model, no test set). */
    async setCheckpoint(id, info) {
      P.ckpt = id;
      P.hasTests = Boolean(id && info && info.test_images && info.test_images.available);
      const testBtn = seg.querySelector('[data-value="test"]');
      testBtn.disabled = !P.hasTests;
      testBtn.title = P.hasTests ? "" : (id ? (info && info.test_images ? info.test_images.message : "") : "zoo models have no test set");
      if (P.hasTests) { P.offset = Math.floor(P.selected / P.pageSize) * P.pageSize; await loadTests(); }
      if (!P.hasTests && P.source === "test") show("sample");
      if (P.hasTests && P.source !== "test") show("test");
    },
    get source() { return P.source; },
    get hasTests() { return P.hasTests; },
    selectTest(i) { P.selected = i; show("test"); },
    show,
  };
}

/** A table of numbers (rows of values), with optional row and column labels. */
function numTable(rows, opts) {
  const o = opts || {};
  const t = el("table", { class: "mat" + (o.cls ? " " + o.cls : "") });
  if (o.caption) t.append(el("caption", { text: o.caption }));
  if (o.cols) t.append(el("tr", {}, o.rows ? el("th") : null, ...o.cols.map((c) => el("th", { text: c }))));
  rows.forEach((row, i) => t.append(el("tr", {}, o.rows ? el("th", { text: o.rows[i] }) : null,
    ...row.map((v) => el("td", { text: typeof v === "number" ? fmt(v, o.digits ?? 4) : String(v) })))));
  return t;
}

/** A picture from a data URL, scaled up with crisp pixels to `width` CSS pixels. */
function pixImg(src, width, attrs) {
  return el("img", Object.assign({ src, class: "pix", style: `width:${width}px` }, attrs || {}));
}

// ============================================================================ start
window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", async () => {
  try {
    state.info = await api("/api/info");
    $("topinfo").textContent = `glassnet ${state.info.version} · runs: ${state.info.runs_dir}`;
  } catch (e) { showError(e); }
  route();
});
