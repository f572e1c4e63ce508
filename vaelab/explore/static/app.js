// vaelab explorer: plain JavaScript, no build step. Talks to the server's JSON endpoints under /api/.
"use strict";

const state = { runs: [], label: 0, sliders: [], seed: 0 };

async function api(path, body) {
  const started = performance.now();
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  document.getElementById("timing").textContent = `${Math.round(performance.now() - started)} ms`;
  return data;
}

const CHANNEL_GAP = 1, GAP_VALUE = 128;  // between the channels of an image that is neither grey nor RGB

// an image from the server: uint8 rows [H][W] (grey) or [H][W][C], drawn 1 pixel per value.
// Grey as grey, C = 3 as RGB colour, any other C as its channels side by side (each grey, left
// to right in channel order, a mid-grey line between them), as the report draws them.
function paint(canvas, image) {
  const height = image.length, width = image[0].length;
  const first = image[0][0], channels = Array.isArray(first) ? first.length : 1;
  const sideBySide = channels !== 1 && channels !== 3;
  const shownWidth = sideBySide ? channels * (width + CHANNEL_GAP) - CHANNEL_GAP : width;
  canvas.width = shownWidth; canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(shownWidth, height);
  const put = (i, j, r, g, b) => {
    const k = 4 * (i * shownWidth + j);
    pixels.data[k] = r; pixels.data[k + 1] = g; pixels.data[k + 2] = b; pixels.data[k + 3] = 255;
  };
  for (let i = 0; i < height; i++) {
    if (sideBySide) for (let c = 1; c < channels; c++) put(i, c * (width + CHANNEL_GAP) - 1, GAP_VALUE, GAP_VALUE, GAP_VALUE);
    for (let j = 0; j < width; j++) {
      const value = image[i][j];
      if (channels === 1) put(i, j, value, value, value);
      else if (channels === 3) put(i, j, value[0], value[1], value[2]);
      else for (let c = 0; c < channels; c++) put(i, c * (width + CHANNEL_GAP) + j, value[c], value[c], value[c]);
    }
  }
  context.putImageData(pixels, 0, 0);
}

function canvas(className, title) {
  const element = document.createElement("canvas");
  element.className = className;
  if (title) element.title = title;
  return element;
}

function setStatus(text) { document.getElementById("status").textContent = text; }

function showError(error) { setStatus(`error: ${error.message}`); }

function classNames() {
  const withClasses = state.runs.find(run => run.classes.length);
  return withClasses ? withClasses.classes : [];
}

function buildControls() {
  const classes = document.getElementById("classes");
  classes.innerHTML = "";
  classNames().forEach((name, index) => {
    const button = document.createElement("button");
    button.textContent = name;
    button.dataset.label = index;
    button.className = index === state.label ? "on" : "";
    button.addEventListener("click", () => {
      state.label = index;
      classes.querySelectorAll("button").forEach(b => b.classList.toggle("on", Number(b.dataset.label) === index));
      refresh();
    });
    classes.appendChild(button);
  });
  const count = Math.max(...state.runs.map(run => run.directions));
  state.sliders = new Array(count).fill(0);
  const sliders = document.getElementById("sliders");
  sliders.innerHTML = "";
  for (let k = 0; k < count; k++) {
    const label = document.createElement("label");
    // slider k moves unit units[k] of each run's code; greyed where that unit is inactive in every run
    const units = state.runs.map(run => run.units[k]).filter(unit => unit !== undefined);
    const active = state.runs.some(run => run.active[k]);
    label.classList.toggle("inactive", !active);
    label.title = active ? "an active unit" : "an inactive unit: its posterior mean hardly moves over the test images";
    label.innerHTML = `<span>unit ${[...new Set(units)].join("/")}</span><input type="range" min="-3" max="3" step="0.05" value="0" data-k="${k}"><output>0.00</output>`;
    const input = label.querySelector("input");
    input.addEventListener("input", () => {
      state.sliders[k] = Number(input.value);
      label.querySelector("output").textContent = state.sliders[k].toFixed(2);
      state.z = null;
      refresh();
    });
    sliders.appendChild(label);
  }
  const views = document.getElementById("views");
  views.innerHTML = "";
  state.runs.forEach((run, index) => {
    const view = document.createElement("div");
    view.className = "view";
    const title = document.createElement("div");
    const about = document.createElement("small");
    title.textContent = `${run.name} `;
    about.textContent = `(${run.model}, d = ${run.latent_dim})`;
    title.appendChild(about);
    view.appendChild(title);
    const image = canvas("image", run.name);
    image.id = `view-${index}`;
    view.appendChild(image);
    views.appendChild(view);
  });
  const plane = state.runs.findIndex(run => run.latent_dim === 2);
  document.getElementById("manifold-box").hidden = plane < 0;
}

function labelFor(run) { return run.classes.length ? Math.min(state.label, run.classes.length - 1) : null; }

// every run shows the same slider values, or the same z (random or manifold) where its size fits
async function refresh() {
  try {
    await Promise.all(state.runs.map(async (run, index) => {
      const body = { run: index, label: labelFor(run) };
      if (state.z && state.z.length === run.latent_dim) body.z = state.z;
      else body.sliders = state.sliders.slice(0, run.directions);
      const data = await api("/api/decode", body);
      paint(document.getElementById(`view-${index}`), data.images[0]);
    }));
    setStatus("ready");
  } catch (error) { showError(error); }
}

async function randomZ() {
  state.seed += 1;
  try {
    const first = await api("/api/random", { run: 0, seed: state.seed, label: labelFor(state.runs[0]) });
    state.z = first.z[0];
    await refresh();
  } catch (error) { showError(error); }
}

async function interpolate() {
  const strips = document.getElementById("strips");
  strips.innerHTML = "";
  try {
    for (const [index, run] of state.runs.entries()) {
      const data = await api("/api/interpolate", { run: index, label: labelFor(run), steps: Number(document.getElementById("steps").value),
        first: Number(document.getElementById("first").value), last: Number(document.getElementById("last").value) });
      const row = document.createElement("div");
      row.className = "row";
      row.title = run.name;
      data.images.forEach(image => { const c = canvas("small"); paint(c, image); row.appendChild(c); });
      strips.appendChild(row);
    }
  } catch (error) { showError(error); }
}

function drawingRuns() { return state.runs.filter(run => run.drawing); }

// the drawing pad: white strokes on black, one grey channel, read back at the model's image size.
// It serves only the runs of one-channel images; the page says which runs it leaves out, and
// hides the pad when it serves none.
function setupDrawing() {
  const pad = document.getElementById("draw"), context = pad.getContext("2d");
  const others = state.runs.filter(run => !run.drawing);
  const note = document.getElementById("draw-note");
  if (others.length) {
    const which = others.map(run => `${run.name} (${run.channels} channels)`).join(", ");
    note.textContent = `The drawing pad draws one grey channel, so it is off for runs of colour or multi-channel images: ${which}.`;
    note.hidden = false;
  }
  if (!drawingRuns().length) {
    pad.hidden = true;
    document.getElementById("draw-tools").hidden = true;
    return;
  }
  let drawing = false, timer = null;
  const clear = () => { context.fillStyle = "black"; context.fillRect(0, 0, pad.width, pad.height); };
  clear();
  const point = event => { const r = pad.getBoundingClientRect(); return [(event.clientX - r.left) * pad.width / r.width, (event.clientY - r.top) * pad.height / r.height]; };
  pad.addEventListener("pointerdown", event => { drawing = true; pad.setPointerCapture(event.pointerId); context.beginPath(); context.moveTo(...point(event)); });
  pad.addEventListener("pointermove", event => {
    if (!drawing) return;
    context.lineTo(...point(event));
    context.strokeStyle = "white"; context.lineWidth = pad.width / 12; context.lineCap = "round"; context.lineJoin = "round";
    context.stroke();
    clearTimeout(timer); timer = setTimeout(analyse, 60);
  });
  pad.addEventListener("pointerup", () => { drawing = false; clearTimeout(timer); analyse(); });
  document.getElementById("clear").addEventListener("click", () => { clear(); document.getElementById("analysis").innerHTML = ""; });
}

function drawnImage(run) {
  const [, height, width] = run.image_shape;
  const small = document.createElement("canvas");
  small.width = width; small.height = height;
  const context = small.getContext("2d");
  context.drawImage(document.getElementById("draw"), 0, 0, width, height);
  const data = context.getImageData(0, 0, width, height).data;
  const rows = [];
  for (let i = 0; i < height; i++) {
    const row = [];
    for (let j = 0; j < width; j++) {
      row.push(data[4 * (i * width + j)] / 255);  // the pad is grey: its red is its value
    }
    rows.push(row);
  }
  return rows;
}

// analyses overlap while a stroke goes on: only the latest one is shown, and the box's data-state
// says "working" until it is ("done")
let latestAnalysis = 0;

async function analyse() {
  const box = document.getElementById("analysis"), mine = ++latestAnalysis;
  box.dataset.state = "working";
  try {
    const parts = [];
    for (const [index, run] of state.runs.entries()) {
      if (!run.drawing) continue;
      const data = await api("/api/analyse", { run: index, image: drawnImage(run) });
      parts.push([run, data]);
    }
    if (mine !== latestAnalysis) return;  // a later drawing is being analysed
    box.innerHTML = "";
    for (const [run, data] of parts) {
      const block = document.createElement("div");
      const heading = document.createElement("h3");
      heading.textContent = run.name;
      block.appendChild(heading);
      const row = document.createElement("div");
      row.className = "row";
      const reconstruction = canvas("image", "reconstruction"); reconstruction.classList.add("reconstruction");
      paint(reconstruction, data.reconstruction); row.appendChild(reconstruction);
      block.appendChild(row);
      if (data.posterior.length) {
        data.posterior.forEach((p, y) => {
          const bar = document.createElement("div");
          bar.className = "bar";
          const name = document.createElement("span"), track = document.createElement("span");
          const fill = document.createElement("span"), share = document.createElement("span");
          name.textContent = run.classes[y];
          fill.className = "fill";
          fill.style.width = `${(100 * p).toFixed(1)}%`;
          track.appendChild(fill);
          share.textContent = `${(100 * p).toFixed(1)}%`;
          bar.append(name, track, share);
          block.appendChild(bar);
        });
        const style = document.createElement("div");
        style.className = "row";
        style.title = "its style written in every class";
        data.style.forEach(image => { const c = canvas("small"); paint(c, image); style.appendChild(c); });
        block.appendChild(style);
      }
      box.appendChild(block);
    }
    box.dataset.state = "done";
  } catch (error) { showError(error); }
}

function setupManifold() {
  const plane = document.getElementById("manifold");
  plane.addEventListener("click", event => {
    const r = plane.getBoundingClientRect();
    state.z = [6 * (event.clientX - r.left) / r.width - 3, 3 - 6 * (event.clientY - r.top) / r.height];
    refresh();
  });
}

async function start() {
  try {
    state.runs = (await api("/api/runs")).runs;
    buildControls();
    setupDrawing();
    setupManifold();
    document.getElementById("random").addEventListener("click", randomZ);
    document.getElementById("centre").addEventListener("click", () => {
      state.z = null; state.sliders.fill(0);
      document.querySelectorAll("#sliders input").forEach(input => { input.value = 0; input.nextElementSibling.textContent = "0.00"; });
      refresh();
    });
    document.getElementById("interpolate").addEventListener("click", interpolate);
    await refresh();
  } catch (error) { showError(error); }
}

start();
