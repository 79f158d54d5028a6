/* glassnet explorer — What a channel sees: feature visualisations of a layer's channels, computed in the
   background and cached on the server, and the test images that excite a channel most. */
"use strict";

const C = { started: false, info: null, doc: null, job: null, poll: null, version: null, items: {}, selected: null, gen: 0 };

async function cSelectModel() {
  const d = await api("/api/channels/layers?" + sourceQuery($("c-model").value));
  C.info = d;
  const sel = $("c-layer");
  sel.innerHTML = "";
  for (const L of d.layers) sel.append(el("option", { value: L.name, text: `${L.name} (${L.kind}, ${L.shape.join("×")})` }));
  sel.value = d.default || (d.layers[0] && d.layers[0].name) || "";
  $("c-size").value = String(d.size);
  $("c-meta").textContent = `${d.source.title} · input ${d.source.input_shape.join("×")}` + (d.source.has_test_set ? "" : " · no test set: no top images");
  await cCompute();
}

async function cCancelOurs() {
  if (C.job && C.job.status === "running") {
    try { await api(`/api/jobs/${C.job.id}`, { method: "DELETE" }); } catch (e) { /* finished meanwhile */ }
  }
  clearInterval(C.poll);
  C.poll = null;
}

async function cCompute() {
  const gen = ++C.gen;
  await cCancelOurs();
  const L = C.info.layers.find((x) => x.name === $("c-layer").value);
  const count = Math.max(1, Math.min(64, parseInt($("c-count").value, 10) || 16));
  const n = L ? Math.min(count, L.channels) : count;
  const body = Object.assign(sourceOf($("c-model").value), {
    layer: $("c-layer").value,
    channels: Array.from({ length: n }, (_, i) => i),
    steps: Math.max(1, Math.min(512, parseInt($("c-steps").value, 10) || 128)),
    size: Math.max(8, Math.min(160, parseInt($("c-size").value, 10) || C.info.size)),
  });
  if (body.pretrained === false) delete body.pretrained;
  let d;
  try {
    d = await api("/api/channels", { json: body });
  } catch (e) {
    if (e.status === 409 && e.doc && e.doc.job) {
      // another page's feature job: say so, and offer to stop it
      const stop = el("button", { class: "ghost small", text: "stop it and compute mine" });
      stop.addEventListener("click", guard(async () => { await api(`/api/jobs/${e.doc.job.id}`, { method: "DELETE" }); await cCompute(); }));
      $("c-status").innerHTML = "";
      $("c-status").append(el("span", { text: e.message + " " }), stop);
      return;
    }
    throw e;
  }
  if (gen !== C.gen) return;
  showError(null);
  C.doc = d;
  C.items = Object.assign({}, d.items);
  C.job = d.job;
  C.version = null;
  if (C.selected !== null && !d.channels.includes(C.selected)) C.selected = null;
  renderChannelGrid();
  cStatus();
  if (C.job) {
    $("c-stop").disabled = false;
    C.poll = setInterval(guard(cPoll), 400);
  } else $("c-stop").disabled = true;
  if (C.selected !== null) await cShowTop(C.selected);
}

async function cPoll() {
  const job = C.job;
  if (!job) return;
  const q = C.version === null ? "" : `?since=${C.version}`;
  const j = await api(`/api/jobs/${job.id}${q}`);
  if (C.job !== job) return;
  if (!j.unchanged) {
    C.version = j.version;
    const items = (j.result && j.result.items) || {};
    C.job = Object.assign({}, j, { result: undefined });
    let changed = false;
    for (const [k, v] of Object.entries(items)) if (!C.items[k]) { C.items[k] = v; changed = true; }
    if (changed) renderChannelGrid();
    cStatus(j);
  }
  if (j.status !== "running" && !j.unchanged) {
    clearInterval(C.poll);
    C.poll = null;
    $("c-stop").disabled = true;
    cStatus(j);
  }
}

function cStatus(j) {
  const d = C.doc;
  const total = d.channels.length;
  const have = d.channels.filter((c) => C.items[String(c)]).length;
  $("c-bar").style.width = `${(100 * have) / Math.max(1, total)}%`;
  let text = `${have} of ${total} channels of layer ${d.layer} (${d.kind}, ${d.shape.join("×")}) · ${d.settings.steps} steps at ${d.settings.size}×${d.settings.size}, ${d.settings.param}`;
  text += d.cached ? ` · ${d.cached} from the cache` : "";
  const job = j || C.job;
  if (job) {
    if (job.status === "running") {
      const det = job.detail || {};
      text += det.channel !== undefined ? ` · computing channel ${det.channel}, step ${det.step} of ${det.steps}` : " · starting";
    } else text += ` · ${job.status}${job.message ? ": " + job.message : ""} (${fmt(job.elapsed, 1)} s)`;
  }
  $("c-status").textContent = text;
  $("c-status").dataset.have = String(have);
}

function sparkline(values) {
  const c = el("canvas");
  const W = 100, H = 18;
  const ctx = sizeCanvas(c, W, H);
  ctx.imageSmoothingEnabled = true;
  c.style.width = "100%";
  const lo = Math.min(...values), hi = Math.max(...values);
  ctx.strokeStyle = "#4f46e5"; ctx.lineWidth = 1.2; ctx.beginPath();
  values.forEach((v, i) => {
    const x = (i / Math.max(1, values.length - 1)) * W, y = H - 2 - ((v - lo) / Math.max(1e-12, hi - lo)) * (H - 4);
    if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
  });
  ctx.stroke();
  return c;
}

function renderChannelGrid() {
  const grid = $("c-grid");
  grid.innerHTML = "";
  for (const c of C.doc.channels) {
    const it = C.items[String(c)];
    const card = el("div", { class: "channel" + (it ? "" : " pending") + (C.selected === c ? " on" : ""), "data-channel": c,
      title: it ? `channel ${c}: mean activation ${fmt(it.start, 4)} at step 0 → ${fmt(it.end, 4)} after ${it.steps} steps` : `channel ${c}: waiting` });
    card.append(it ? el("img", { src: it.png, alt: `channel ${c}` }) : el("div", { class: "placeholder" }));
    card.append(el("div", { class: "cap" }, el("b", { text: `#${c}` }), el("span", { text: it ? `${fmt(it.start, 2)}→${fmt(it.end, 2)}` : "…" })));
    if (it && it.history) card.append(sparkline(it.history));
    card.addEventListener("click", guard(async () => {
      C.selected = c;
      for (const o of grid.querySelectorAll(".channel")) o.classList.toggle("on", o === card);
      await cShowTop(c);
    }));
    grid.append(card);
  }
}

async function cShowTop(c) {
  const box = $("c-detail");
  const d = C.doc;
  const it = C.items[String(c)];
  box.innerHTML = "";
  const head = el("div", { class: "pics" });
  if (it) head.append(el("div", {}, pixImg(it.png, 160), el("div", { class: "small muted", text: `${it.size}×${it.size}, ${it.steps} steps` })));
  const nums = el("div", { class: "small" }, el("h4", { id: "c-detail-title", text: `Layer ${d.layer}, channel ${c}` }));
  if (it) {
    nums.append(el("div", { text: `mean activation: ${fmt(it.start, 4)} at step 0 → ${fmt(it.end, 4)} at the last step (best ${fmt(it.best, 4)})` }));
    nums.append(el("div", { class: "muted", text: it.cached ? "from the cache" : `computed in ${fmtSeconds(it.seconds)}` }));
  } else nums.append(el("div", { class: "muted", text: "its feature visualisation is still being computed" }));
  head.append(nums);
  box.append(head);
  if (!C.info.source.has_test_set) {
    box.append(el("div", { class: "muted small", text: "A zoo model has no test set: the images that excite a channel come from a checkpoint's test images." }));
    return;
  }
  const wait = el("div", { class: "muted small", text: "measuring the channel on 1,000 test images…" });
  box.append(wait);
  const q = new URLSearchParams(sourceQuery($("c-model").value));
  q.set("layer", d.layer); q.set("channel", String(c)); q.set("k", "12");
  const top = await api("/api/channels/top?" + q.toString());
  if (C.selected !== c || C.doc !== d) return;
  wait.remove();
  box.append(el("div", { class: "small", id: "c-top-title" },
    el("b", { text: `The ${top.items.length} test images that excite channel ${c} most` }),
    ` — of ${fmtInt(top.sample)} ${top.dataset} test images; ${top.objective}: mean ${fmt(top.stats.mean, 3)}, from ${fmt(top.stats.min, 3)} to ${fmt(top.stats.max, 3)}` +
    (top.map ? "; the box is the receptive field of the channel's strongest unit" : "")));
  const grid = el("div", { class: "top-grid", id: "c-top" });
  const imgs = await Promise.all(top.items.map((t) => loadImage(t.png)));
  top.items.forEach((t, i) => {
    const im = imgs[i];
    const s = Math.max(1, Math.floor(96 / im.width));
    const cv = el("canvas");
    const ctx = sizeCanvas(cv, im.width * s, im.height * s);
    ctx.drawImage(im, 0, 0, im.width * s, im.height * s);
    if (t.box && !t.box.whole) {
      ctx.strokeStyle = "#00e0ff"; ctx.lineWidth = 2;
      ctx.strokeRect(t.box.left * s + 1, t.box.top * s + 1, (t.box.right - t.box.left) * s - 2, (t.box.bottom - t.box.top) * s - 2);
    }
    grid.append(el("figure", { "data-index": t.index, title: `test image ${t.index}` + (t.unit ? `; strongest unit at (${t.unit[0]}, ${t.unit[1]}), ${fmt(t.peak, 4)}` : "") },
      cv, el("figcaption", { text: `${t.class} ${fmt(t.mean, 3)}` })));
  });
  box.append(grid);
}

views.channels = {
  enter: guard(async () => {
    if (!C.started) {
      C.started = true;
      const nCkpt = await fillModelSelect($("c-model"), {});
      if (!nCkpt) $("c-model").value = "pre:efficientnet_lite0";
      $("c-model").addEventListener("change", guard(async () => { C.selected = null; $("c-detail").innerHTML = ""; await cSelectModel(); }));
      $("c-layer").addEventListener("change", guard(async () => { C.selected = null; await cCompute(); }));
      $("c-go").addEventListener("click", guard(cCompute));
      $("c-stop").addEventListener("click", guard(async () => { if (C.job) { await api(`/api/jobs/${C.job.id}`, { method: "DELETE" }); await cPoll(); } }));
      await cSelectModel();
    } else if (C.job && C.job.status === "running" && !C.poll) {
      C.poll = setInterval(guard(cPoll), 400);
    }
  }),
  leave: () => { clearInterval(C.poll); C.poll = null; },
};
