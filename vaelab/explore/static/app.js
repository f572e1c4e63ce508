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

// an image from the server: uint8 rows [H][W] (gray) or [H][W][C], drawn 1 pixel per value
function paint(canvas, image) {
  const height = image.length, width = image[0].length;
  canvas.width = width; canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  for (let i = 0; i < height; i++) for (let j = 0; j < width; j++) {
    const value = image[i][j], k = 4 * (i * width + j);
    const [r, g, b] = Array.isArray(value) ? [value[0], value[1 % value.length], value[2 % value.length]] : [value, value, value];
    pixels.data[k] = r; pixels.data[k + 1] = g; pixels.data[k + 2] = b; pixels.data[k + 3] = 255;
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
    label.innerHTML = `<span>direction ${k + 1}</span><input type="range" min="-3" max="3" step="0.05" value="0" data-k="${k}"><output>0.00</output>`;
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
    view.innerHTML = `<div>${run.name} <small>(${run.model}, d = ${run.latent_dim})</small></div>`;
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

// the drawing pad: white strokes on black, read back at the model's image size
function setupDrawing() {
  const pad = document.getElementById("draw"), context = pad.getContext("2d");
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
  pad.addEventListener("pointerup", () => { drawing = false; analyse(); });
  document.getElementById("clear").addEventListener("click", () => { clear(); document.getElementById("analysis").innerHTML = ""; });
}

function drawnImage(run) {
  const [channels, height, width] = run.image_shape;
  const small = document.createElement("canvas");
  small.width = width; small.height = height;
  const context = small.getContext("2d");
  context.drawImage(document.getElementById("draw"), 0, 0, width, height);
  const data = context.getImageData(0, 0, width, height).data;
  const rows = [];
  for (let i = 0; i < height; i++) {
    const row = [];
    for (let j = 0; j < width; j++) {
      const k = 4 * (i * width + j);
      row.push(channels === 1 ? data[k] / 255 : [data[k] / 255, data[k + 1] / 255, data[k + 2] / 255].slice(0, channels));
    }
    rows.push(row);
  }
  return rows;
}

async function analyse() {
  const box = document.getElementById("analysis");
  try {
    const parts = [];
    for (const [index, run] of state.runs.entries()) {
      const data = await api("/api/analyse", { run: index, image: drawnImage(run) });
      parts.push([run, data]);
    }
    box.innerHTML = "";
    for (const [run, data] of parts) {
      const block = document.createElement("div");
      block.innerHTML = `<h3>${run.name}</h3>`;
      const row = document.createElement("div");
      row.className = "row";
      const reconstruction = canvas("image", "reconstruction"); reconstruction.classList.add("reconstruction");
      paint(reconstruction, data.reconstruction); row.appendChild(reconstruction);
      block.appendChild(row);
      if (data.posterior.length) {
        data.posterior.forEach((p, y) => {
          const bar = document.createElement("div");
          bar.className = "bar";
          bar.innerHTML = `<span>${run.classes[y]}</span><span><span class="fill" style="width:${(100 * p).toFixed(1)}%"></span></span><span>${(100 * p).toFixed(1)}%</span>`;
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
