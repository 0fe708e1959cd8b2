// pconv serve: paint a mask over a photo, inpaint it with /api/inpaint, compare, download.
// The canvases hold the image at its original resolution; CSS scales them to fit the window.
// The exported mask is a PNG of the image's size: white = hole (pconv's convention).
"use strict";

const $ = (id) => document.getElementById(id);
const imageCanvas = $("image");
const maskCanvas = $("mask");
const imageCtx = imageCanvas.getContext("2d");
const maskCtx = maskCanvas.getContext("2d");
const STROKE = "#ff2d55";
const ACCEPTED = ["image/png", "image/jpeg", "image/webp", "image/bmp", "image/tiff"];
const FORMAT_OF_TYPE = {
  "image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp",
  "image/bmp": "bmp", "image/tiff": "tiff",
};

const state = {
  name: "image",      // the opened file's name without its suffix
  type: "image/png",  // the opened file's type: the download's format
  current: null,      // Blob of the image shown (the opened file, then each result)
  currentBitmap: null,
  before: null,       // ImageBitmap before the last inpaint (Compare)
  history: [],        // undo entries: {mask: ImageData, image: Blob|null}
  tool: "brush",
  painting: false,
  last: null,
  busy: false,
  inpainted: false,
  painted: false,
};

function setStatus(text, kind = "") {
  $("status").textContent = text;
  $("status").className = kind;
  document.body.dataset.state = kind || "idle";
}

function showError(text) {
  setStatus(text, "error");
}

function updateButtons() {
  const loaded = state.current !== null;
  $("undo").disabled = state.busy || state.history.length === 0;
  $("clear").disabled = state.busy || !state.painted;
  $("inpaint").disabled = state.busy || !loaded || !state.painted;
  $("compare").disabled = state.busy || state.before === null;
  $("download").disabled = state.busy || !state.inpainted;
}

// ---------------------------------------------------------------- layout

function fitToWindow() {
  if (!state.current) return;
  const stage = $("stage");
  const maxW = stage.clientWidth - 16;
  const maxH = stage.clientHeight - 16;
  const scale = Math.min(maxW / imageCanvas.width, maxH / imageCanvas.height);
  const w = Math.max(1, Math.floor(imageCanvas.width * scale));
  const h = Math.max(1, Math.floor(imageCanvas.height * scale));
  for (const canvas of [imageCanvas, maskCanvas]) {
    canvas.style.width = w + "px";
    canvas.style.height = h + "px";
  }
}

window.addEventListener("resize", fitToWindow);

// ---------------------------------------------------------------- opening images

async function openFile(file) {
  if (!file) return;
  if (!ACCEPTED.includes(file.type)) {
    showError(`${file.name}: not an image pconv reads (PNG, JPEG, WebP, BMP, TIFF)`);
    return;
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (err) {
    showError(`${file.name}: this browser cannot decode it`);
    return;
  }
  state.name = file.name.replace(/\.[^.]*$/, "") || "image";
  state.type = file.type;
  state.current = file;
  state.before = null;
  state.history = [];
  state.inpainted = false;
  showBitmap(bitmap, true);
  $("drop-hint").hidden = true;
  $("canvases").hidden = false;
  fitToWindow();
  setStatus(`${file.name}: ${bitmap.width}x${bitmap.height}. Paint over what should go.`);
  updateButtons();
}

function showBitmap(bitmap, resetMask) {
  if (resetMask || imageCanvas.width !== bitmap.width || imageCanvas.height !== bitmap.height) {
    for (const canvas of [imageCanvas, maskCanvas]) {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
    }
    clearMask();
  }
  state.currentBitmap = bitmap;
  imageCtx.drawImage(bitmap, 0, 0);
}

$("file").addEventListener("change", (event) => {
  openFile(event.target.files[0]);
  event.target.value = "";
});

const stage = $("stage");
stage.addEventListener("dragover", (event) => {
  event.preventDefault();
  stage.classList.add("dragging");
});
stage.addEventListener("dragleave", () => stage.classList.remove("dragging"));
stage.addEventListener("drop", (event) => {
  event.preventDefault();
  stage.classList.remove("dragging");
  openFile(event.dataTransfer.files[0]);
});

// ---------------------------------------------------------------- painting

function clearMask() {
  maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  state.painted = false;
}

function snapshot(image = null) {
  state.history.push({
    mask: maskCtx.getImageData(0, 0, maskCanvas.width, maskCanvas.height),
    painted: state.painted,
    image,
    before: state.before,
    inpainted: state.inpainted,
  });
  if (state.history.length > 50) state.history.shift();
}

function toImage(event) {
  const box = maskCanvas.getBoundingClientRect();
  return {
    x: (event.clientX - box.left) * (maskCanvas.width / box.width),
    y: (event.clientY - box.top) * (maskCanvas.height / box.height),
  };
}

function brushWidth() {
  const box = maskCanvas.getBoundingClientRect();
  return Number($("size").value) * (maskCanvas.width / box.width);
}

function strokeTo(point) {
  maskCtx.globalCompositeOperation = state.tool === "eraser" ? "destination-out" : "source-over";
  maskCtx.strokeStyle = STROKE;
  maskCtx.fillStyle = STROKE;
  maskCtx.lineWidth = brushWidth();
  maskCtx.lineCap = "round";
  maskCtx.lineJoin = "round";
  maskCtx.beginPath();
  if (state.last) {
    maskCtx.moveTo(state.last.x, state.last.y);
    maskCtx.lineTo(point.x, point.y);
    maskCtx.stroke();
  } else {
    maskCtx.arc(point.x, point.y, maskCtx.lineWidth / 2, 0, 2 * Math.PI);
    maskCtx.fill();
  }
  state.last = point;
}

maskCanvas.addEventListener("pointerdown", (event) => {
  if (state.busy || event.button !== 0) return;
  maskCanvas.setPointerCapture(event.pointerId);
  snapshot();
  state.painting = true;
  state.last = null;
  strokeTo(toImage(event));
  updateButtons();
});

maskCanvas.addEventListener("pointermove", (event) => {
  if (state.painting) strokeTo(toImage(event));
});

function endStroke() {
  if (!state.painting) return;
  state.painting = false;
  state.last = null;
  state.painted = maskHasHole();
  updateButtons();
}

maskCanvas.addEventListener("pointerup", endStroke);
maskCanvas.addEventListener("pointercancel", endStroke);

function maskHasHole() {
  const data = maskCtx.getImageData(0, 0, maskCanvas.width, maskCanvas.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return true;
  return false;
}

function selectTool(tool) {
  state.tool = tool;
  $("brush").classList.toggle("active", tool === "brush");
  $("eraser").classList.toggle("active", tool === "eraser");
}

$("brush").addEventListener("click", () => selectTool("brush"));
$("eraser").addEventListener("click", () => selectTool("eraser"));
$("size").addEventListener("input", () => { $("size-value").textContent = $("size").value; });

$("clear").addEventListener("click", () => {
  snapshot();
  clearMask();
  updateButtons();
});

async function undo() {
  const entry = state.history.pop();
  if (!entry || state.busy) return;
  if (entry.image) {
    state.current = entry.image;
    showBitmap(await createImageBitmap(entry.image), false);
    state.before = entry.before;
    state.inpainted = entry.inpainted;
  }
  maskCtx.putImageData(entry.mask, 0, 0);
  state.painted = entry.painted;
  setStatus(entry.image ? "Undid the last inpaint." : "Undid the last stroke.");
  updateButtons();
}

$("undo").addEventListener("click", undo);

document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "SELECT" || event.target.tagName === "INPUT") return;
  if ((event.ctrlKey || event.metaKey) && event.key === "z") {
    event.preventDefault();
    undo();
  } else if (event.key === "b") {
    selectTool("brush");
  } else if (event.key === "e") {
    selectTool("eraser");
  }
});

// ---------------------------------------------------------------- inpainting

function maskBlob() {
  // white = hole wherever anything was painted (any alpha), black elsewhere
  const { width, height } = maskCanvas;
  const painted = maskCtx.getImageData(0, 0, width, height);
  const out = new ImageData(width, height);
  for (let i = 0; i < painted.data.length; i += 4) {
    const value = painted.data[i + 3] > 0 ? 255 : 0;
    out.data[i] = out.data[i + 1] = out.data[i + 2] = value;
    out.data[i + 3] = 255;
  }
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").putImageData(out, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error || `${response.status} ${response.statusText}`;
  } catch (err) {
    return `${response.status} ${response.statusText}`;
  }
}

async function inpaint() {
  if (state.busy || !state.current) return;
  state.busy = true;
  updateButtons();
  const model = $("model").value;
  const started = performance.now();
  $("progress").hidden = false;
  const tick = () => {
    const seconds = ((performance.now() - started) / 1000).toFixed(0);
    setStatus(`Inpainting with ${model || "the default model"}... ${seconds} s`, "busy");
  };
  tick();
  const timer = setInterval(tick, 500);
  try {
    const form = new FormData();
    form.append("image", state.current, state.name + "." + (FORMAT_OF_TYPE[state.current.type] || "png"));
    form.append("mask", await maskBlob(), "mask.png");
    if (model.startsWith("method:")) form.append("method", model.slice(7));
    else form.append("model", model);
    form.append("strategy", $("strategy").value);
    form.append("blend", $("blend").value);
    form.append("format", "png"); // lossless working copy; Download re-encodes
    const response = await fetch("/api/inpaint", { method: "POST", body: form });
    if (!response.ok) throw new Error(await errorText(response));
    const result = await response.blob();
    const bitmap = await createImageBitmap(result);
    snapshot(state.current);
    state.before = state.currentBitmap;
    state.current = result;
    state.inpainted = true;
    showBitmap(bitmap, false);
    clearMask();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const used = response.headers.get("X-Pconv-Strategy") || "";
    const notes = response.headers.get("X-Pconv-Notes");
    const blend = response.headers.get("X-Pconv-Blend") || "";
    setStatus(`Done in ${seconds} s (${response.headers.get("X-Pconv-Model")}, ${used}, ` +
      `blend ${blend}).` +
      (notes ? ` Note: ${notes}` : " Paint again to continue, or Download."), "done");
  } catch (err) {
    showError(`Inpainting failed: ${err.message}`);
  } finally {
    clearInterval(timer);
    $("progress").hidden = true;
    state.busy = false;
    updateButtons();
  }
}

$("inpaint").addEventListener("click", inpaint);

function showBefore(on) {
  if (!state.before) return;
  imageCtx.drawImage(on ? state.before : state.currentBitmap, 0, 0);
  $("canvases").classList.toggle("comparing", on);
}

const compare = $("compare");
compare.addEventListener("pointerdown", () => showBefore(true));
for (const name of ["pointerup", "pointerleave", "pointercancel"]) {
  compare.addEventListener(name, () => showBefore(false));
}

async function download() {
  if (!state.inpainted) return;
  const format = FORMAT_OF_TYPE[state.type] || "png";
  let blob = state.current;
  if (format !== "png") {
    setStatus(`Encoding as ${format}...`, "busy");
    const form = new FormData();
    form.append("image", state.current, "image.png");
    form.append("format", format);
    const response = await fetch("/api/convert", { method: "POST", body: form });
    if (!response.ok) {
      showError(`Download failed: ${await errorText(response)}`);
      return;
    }
    blob = await response.blob();
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${state.name}_inpainted.${format === "jpeg" ? "jpg" : format}`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  setStatus(`Downloaded ${link.download}.`, "done");
}

$("download").addEventListener("click", download);

// ---------------------------------------------------------------- start

async function loadModels() {
  try {
    const response = await fetch("/api/models");
    if (!response.ok) throw new Error(await errorText(response));
    const info = await response.json();
    for (const model of info.models) {
      const option = new Option(`${model.name} (${model.source})`, model.name);
      option.title = model.description;
      option.selected = model.default;
      $("model").add(option);
    }
    for (const method of info.methods || []) {
      const option = new Option(`${method.name} (classic)`, `method:${method.name}`);
      option.title = method.description;
      option.selected = method.name === info.default_method;
      $("model").add(option);
    }
    for (const strategy of info.strategies) $("strategy").add(new Option(strategy, strategy));
    for (const blend of info.blends || []) {
      const option = new Option(blend, blend);
      option.selected = blend === info.default_blend;
      $("blend").add(option);
    }
    if (info.models.length === 0) showError("No model is available: start pconv serve --weights FILE");
  } catch (err) {
    showError(`Cannot reach the pconv server: ${err.message}`);
  }
}

setStatus($("status").textContent);
updateButtons();
loadModels();
