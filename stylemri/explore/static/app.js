// stylemri explore: plain JavaScript, no libraries; every request goes to the server that served this page.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, seed: 0, cls: null, current: null, projection: null };
const sequence = new WeakMap(); // img -> number of the latest request, so a slow old answer never wins
let nearestTimer = null;
let gridTimer = null;

function apiUrl(view, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  }
  return `/api/${view}?${q}`;
}

function setStatus(message, isError = false) {
  const el = $("status");
  el.textContent = message;
  el.classList.toggle("error", isError);
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return body.error || `${response.status} ${response.statusText}`;
  } catch (e) {
    return `${response.status} ${response.statusText}`;
  }
}

// Fetch an image and show it; on a 4xx the server's one-line error goes to the status line.
async function show(img, url) {
  const n = (sequence.get(img) || 0) + 1;
  sequence.set(img, n);
  img.classList.add("loading");
  try {
    const response = await fetch(url);
    if (sequence.get(img) !== n) return false;
    if (!response.ok) {
      setStatus(await errorOf(response), true);
      return false;
    }
    const blob = await response.blob();
    if (sequence.get(img) !== n) return false;
    const old = img.src;
    img.src = URL.createObjectURL(blob);
    await img.decode().catch(() => {});
    if (old && old.startsWith("blob:")) URL.revokeObjectURL(old);
    img.dataset.url = url;
    img.dataset.loaded = String(n);
    return true;
  } catch (e) {
    setStatus(`request failed: ${e}`, true);
    return false;
  } finally {
    if (sequence.get(img) === n) img.classList.remove("loading");
  }
}

function trunc() { return Number($("trunc").value); }

// ----------------------------------------------------------------------------------------- covariates

// A covariate model's setting as the `set` parameter (age=72.5,sex=F), null for any other model. Slider values
// are clamped to the training range, so a value the server refuses never comes from a slider.
function covValue(c, i) {
  if (c.kind === "categorical") return $(`cov-${i}`).value;
  if ($(`cov-${i}-missing`) && $(`cov-${i}-missing`).checked) return "NA";
  return String(Math.min(c.high, Math.max(c.low, Number($(`cov-${i}`).value))));
}

function covParam() {
  const cov = state.model.covariates;
  if (!cov) return null;
  return cov.columns.map((c, i) => `${c.name}=${covValue(c, i)}`).join(",");
}

function shortNumber(v) { return String(Number(Number(v).toPrecision(4))); }

function covCaption() {
  const set = covParam();
  return set === null ? "" : ` at ${set.replaceAll(",", ", ")}`;
}

function buildCovariates(cov) {
  const box = $("cov-controls");
  box.replaceChildren();
  cov.columns.forEach((c, i) => {
    const label = document.createElement("label");
    label.append(c.name);
    let input;
    if (c.kind === "continuous") {
      input = document.createElement("input");
      Object.assign(input, { type: "range", min: String(c.low), max: String(c.high),
        step: String((c.high - c.low) / 100), value: String(c.mean) });
      const low = document.createElement("span");
      low.className = "range-end";
      low.textContent = shortNumber(c.low);
      const high = low.cloneNode();
      high.textContent = shortNumber(c.high);
      const out = document.createElement("output");
      out.id = `cov-${i}-value`;
      input.id = `cov-${i}`;
      label.append(low, input, high, out);
      if (cov.missing_allowed) {
        const miss = document.createElement("input");
        Object.assign(miss, { type: "checkbox", id: `cov-${i}-missing`, title: `${c.name} missing` });
        miss.addEventListener("input", covChanged);
        label.append(miss, "missing");
      }
    } else {
      input = document.createElement("select");
      input.id = `cov-${i}`;
      const options = c.categories.map((k) => new Option(k, k));
      if (cov.missing_allowed) options.push(new Option("(missing)", "NA"));
      input.replaceChildren(...options);
      label.append(input);
    }
    input.dataset.covariate = c.name;
    input.addEventListener("input", covChanged);
    box.append(label);
  });
  updateCovLabels();
}

function updateCovLabels() {
  state.model.covariates.columns.forEach((c, i) => {
    if (c.kind !== "continuous") return;
    const v = covValue(c, i);
    $(`cov-${i}-value`).textContent = v === "NA" ? "missing" : shortNumber(v);
    $(`cov-${i}`).disabled = v === "NA";
  });
}

function covChanged() {
  updateCovLabels();
  clearTimeout(gridTimer); // a dragged slider redraws the grid once it rests, not at every step
  gridTimer = setTimeout(renderGrid, 120);
  updateInterp(false);
  updateMix(false);
  if (state.current && "set" in state.current.params) {
    const caption = $("current-caption").textContent.replace(/ at .*$/, "") + covCaption();
    select(state.current.view, { ...state.current.params, set: covParam() }, caption);
  }
}

function classParam(select) { return state.model.classes.length ? select.value : null; }
function intValue(input, fallback) {
  const v = Number.parseInt(input.value, 10);
  return Number.isFinite(v) && v >= 0 ? v : fallback;
}

// ------------------------------------------------------------------------------------------ selection

function select(view, params, caption) {
  state.current = { view, params };
  show($("current-img"), apiUrl(view, params));
  $("current-caption").textContent = caption;
  for (const fmt of ["png", "png16", "nifti"]) {
    $(`dl-${fmt}`).href = apiUrl(view, { ...params, format: fmt });
  }
  if (state.model.data) {
    clearTimeout(nearestTimer);
    nearestTimer = setTimeout(() => showNearest(view, params), 250);
  }
}

async function showNearest(view, params) {
  const url = apiUrl("nearest", { view, ...params });
  const response = await fetch(url);
  if (!response.ok) { setStatus(await errorOf(response), true); return; }
  const nn = await response.json();
  if (state.current.view !== view || JSON.stringify(state.current.params) !== JSON.stringify(params)) return;
  await show($("nearest-img"), nn.image);
  const patient = nn.subject === null ? "" : ` · patient ${nn.subject}`;
  const flag = nn.closer_than_real ? " · CLOSER than the typical real pair" : "";
  const cap = $("nearest-caption");
  cap.textContent = `training image ${nn.index}${nn.flipped ? " (mirrored)" : ""}${patient} · distance ` +
    `${nn.distance.toFixed(4)} · real-to-real median ${nn.real_nn_median.toFixed(4)}${flag}`;
  cap.classList.toggle("warn", nn.closer_than_real);
  cap.dataset.distance = String(nn.distance);
}

// ----------------------------------------------------------------------------------------------- grid

function renderGrid() {
  const grid = $("grid");
  grid.replaceChildren();
  const start = intValue($("seed-start"), 0);
  const count = Math.min(32, Math.max(1, intValue($("seed-count"), 8)));
  const classes = state.model.classes.length ? state.model.classes : [null];
  for (const cls of classes) {
    const row = document.createElement("div");
    row.className = "grid-row";
    const label = document.createElement("span");
    label.className = "row-label";
    label.textContent = cls === null ? "" : cls;
    row.append(label);
    for (let seed = start; seed < start + count; seed++) {
      const img = document.createElement("img");
      img.className = "tile";
      img.alt = `seed ${seed}${cls === null ? "" : ` ${cls}`}`;
      img.title = img.alt;
      img.dataset.seed = String(seed);
      if (cls !== null) img.dataset.cls = cls;
      img.addEventListener("click", () => pick(seed, cls));
      row.append(img);
      show(img, apiUrl("generate", { seed, class: cls, trunc: trunc(), set: covParam() }));
    }
    grid.append(row);
  }
}

function pick(seed, cls) {
  state.seed = seed;
  state.cls = cls;
  for (const id of ["interp-seed", "mix-seed"]) $(id).value = seed;
  if (cls !== null) {
    for (const id of ["walk-from", "interp-class", "mix-class"]) $(id).value = cls;
    if ($("walk-to").value === cls) {
      $("walk-to").value = state.model.classes.find((c) => c !== cls);
    }
  }
  select("generate", { seed, class: cls, trunc: trunc(), set: covParam() },
    `seed ${seed}${cls === null ? "" : `, ${cls}`}${covCaption()}`);
  updateWalk(false);
  updateInterp(false);
  updateMix(false);
}

// ------------------------------------------------------------------------------------------- panels

function walkParams() {
  return { seed: $("walk-mean").checked ? null : state.seed, from: $("walk-from").value, to: $("walk-to").value,
    t: $("walk-t").value, trunc: trunc() };
}

function updateWalk(makeCurrent = true) {
  if (state.model.classes.length < 2 || state.model.covariates) return;
  $("walk-t-value").textContent = Number($("walk-t").value).toFixed(2);
  const p = walkParams();
  show($("walk-img"), apiUrl("walk", p));
  show($("walk-diff"), apiUrl("walk", { ...p, diff: 1 }));
  const who = p.seed === null ? `mean of ${p.from}` : `seed ${p.seed} as ${p.from}`;
  if (makeCurrent) select("walk", p, `${who}, moved t = ${p.t} towards ${p.to}`);
}

function updateInterp(makeCurrent = true) {
  $("interp-t-value").textContent = Number($("interp-t").value).toFixed(2);
  const p = { seed: intValue($("interp-seed"), 0), class: classParam($("interp-class")),
    seed2: intValue($("interp-seed2"), 1), class2: classParam($("interp-class2")), t: $("interp-t").value,
    space: $("interp-space").value, trunc: trunc(), set: covParam() };
  show($("interp-img"), apiUrl("interpolate", p));
  if (makeCurrent) {
    select("interpolate", p, `t = ${p.t} from seed ${p.seed} to seed ${p.seed2} (${p.space})${covCaption()}`);
  }
}

function updateMix(makeCurrent = true) {
  const styles = document.querySelector("input[name=styles]:checked").value;
  const cls = classParam($("mix-class"));
  const p = { seed: intValue($("mix-seed"), 0), seed2: intValue($("mix-seed2"), 1), class: cls, styles,
    trunc: trunc(), set: covParam() };
  const layers = state.model.style_groups[styles] || [];
  $("mix-caption").textContent = `mixed: ${styles} layers ${layers.join(", ")}`;
  show($("mix-a"), apiUrl("generate", { seed: p.seed, class: cls, trunc: p.trunc, set: p.set }));
  show($("mix-b"), apiUrl("generate", { seed: p.seed2, class: cls, trunc: p.trunc, set: p.set }));
  show($("mix-img"), apiUrl("mix", p));
  if (makeCurrent) select("mix", p, `seed ${p.seed} with the ${styles} styles of seed ${p.seed2}${covCaption()}`);
}

// ------------------------------------------------------------------------------------------- project

async function submitProjection(event) {
  event.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) { setStatus("choose a PNG/JPEG slice or a NIfTI volume first", true); return; }
  if (file.size > state.model.max_upload_bytes) {
    setStatus(`${file.name}: ${file.size} bytes; the limit is ${state.model.max_upload_bytes} bytes`, true);
    return;
  }
  const form = new FormData($("project-form"));
  for (const key of ["slice", "class"]) if (!form.get(key)) form.delete(key);
  $("project-btn").disabled = true;
  $("project-status").textContent = `projecting ${file.name} (${form.get("steps")} steps)…`;
  try {
    const response = await fetch("/api/project", { method: "POST", body: form });
    if (!response.ok) {
      const message = await errorOf(response);
      $("project-status").textContent = message;
      setStatus(message, true);
      return;
    }
    const result = await response.json();
    state.projection = result;
    $("project-status").textContent = `${result.name}: ${result.steps} steps, loss ${result.initial_loss.toFixed(3)}` +
      ` → ${result.final_loss.toFixed(3)}, MS-SSIM ${result.ms_ssim.toFixed(3)}`;
    $("project-result").hidden = false;
    $("proj-t").value = 0;
    await show($("proj-target"), result.target);
    await show($("proj-recon"), result.reconstruction);
    updateProjection();
  } finally {
    $("project-btn").disabled = false;
  }
}

function updateProjection() {
  const pr = state.projection;
  if (!pr) return;
  $("proj-t-value").textContent = Number($("proj-t").value).toFixed(2);
  const p = { id: pr.id };
  if (state.model.classes.length >= 2) Object.assign(p, { from: $("proj-from").value, to: $("proj-to").value,
    t: $("proj-t").value });
  show($("proj-edit"), apiUrl("projection", p));
  if (p.t !== undefined) show($("proj-diff"), apiUrl("projection", { ...p, diff: 1 }));
  select("projection", p, `projection of ${pr.name}` + (p.t !== undefined ? `, t = ${p.t} towards ${p.to}` : ""));
}

// ---------------------------------------------------------------------------------------------- setup

function fillClasses(select, classes, chosen) {
  select.replaceChildren(...classes.map((c) => new Option(c, c)));
  if (chosen !== undefined) select.value = chosen;
}

function describe(m) {
  const classes = m.classes.length ? `classes ${m.classes.join(", ")}` : "unconditional";
  const data = m.data ? ` · nearest images from ${m.data.source} (${m.data.images} images)` : "";
  const cov = m.covariates ? ` · covariates ${m.covariates.columns.map((c) => c.name).join(", ")}` : "";
  return `${m.run} · ${m.kimg} kimg · ${m.resolution} px · ${classes}${cov} · ${m.num_ws} style layers${data}`;
}

async function init() {
  const response = await fetch("/api/model");
  if (!response.ok) { setStatus(await errorOf(response), true); return; }
  const m = await response.json();
  state.model = m;
  state.cls = m.classes.length ? m.classes[0] : null;
  $("model-info").textContent = describe(m);
  document.body.classList.toggle("unconditional", m.classes.length === 0);
  for (const id of ["interp-class", "interp-class2", "mix-class", "upload-class"]) fillClasses($(id), m.classes);
  for (const id of ["walk-from", "proj-from"]) fillClasses($(id), m.classes, m.classes[0]);
  for (const id of ["walk-to", "proj-to"]) fillClasses($(id), m.classes, m.classes[1]);
  $("upload-axis").value = m.axis;
  const walks = m.classes.length >= 2 && !m.covariates;
  $("walk-off").hidden = walks;
  $("walk-section").classList.toggle("disabled", !walks);
  if (m.covariates) {
    $("walk-off").textContent = "A covariate model has no class direction here (the class means would need " +
      "covariates): move the covariate sliders instead.";
    $("cov-section").hidden = false;
    $("project-section").hidden = true; // projection does not feed covariates yet (docs/covariates.md)
    buildCovariates(m.covariates);
  }
  $("nearest").hidden = !m.data;
  $("nearest-off").hidden = Boolean(m.data);

  $("trunc").addEventListener("input", () => {
    $("trunc-value").textContent = trunc().toFixed(2);
    clearTimeout(gridTimer); // a dragged slider redraws the grid once it rests, not at every step
    gridTimer = setTimeout(renderGrid, 120);
    updateWalk(false);
    updateInterp(false);
    updateMix(false);
    if (state.current && "trunc" in state.current.params) {
      select(state.current.view, { ...state.current.params, trunc: trunc() }, $("current-caption").textContent);
    }
  });
  $("regenerate").addEventListener("click", () => {
    $("seed-start").value = Math.floor(Math.random() * 100000);
    renderGrid();
  });
  for (const id of ["seed-start", "seed-count"]) $(id).addEventListener("change", renderGrid);
  for (const id of ["walk-t", "walk-from", "walk-to", "walk-mean"]) $(id).addEventListener("input", () => updateWalk());
  for (const id of ["interp-t", "interp-seed", "interp-seed2", "interp-class", "interp-class2", "interp-space"]) {
    $(id).addEventListener("input", () => updateInterp());
  }
  for (const id of ["mix-seed", "mix-seed2", "mix-class"]) $(id).addEventListener("input", () => updateMix());
  for (const r of document.querySelectorAll("input[name=styles]")) r.addEventListener("change", () => updateMix());
  for (const id of ["proj-t", "proj-from", "proj-to"]) $(id).addEventListener("input", updateProjection);
  $("project-form").addEventListener("submit", submitProjection);

  renderGrid();
  pick(0, state.cls);
  setStatus("ready");
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", init);
