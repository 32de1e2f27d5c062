// Instant prompts: SAM's (or SAM 2's) prompt encoder and mask decoder (the exported ONNX decoder,
// which gives low-res logits: sam/onnx_lowres.py) run in the page through onnxruntime-web, on
// the image features the server computed once per image; masks.js resizes the one mask drawn to
// the view. The mask under the cursor follows the mouse; a click adds the prompt as the server
// would (points, box corners, the previous best candidate's low-res logits as the mask prompt)
// and sends the three ranked masks back to the server with the 'mask' event.
//
// Runs as the body of a gr.HTML js_on_load, after masks.js: `element`, `trigger`, `props` and
// `watch` are Gradio's. props.value is the state made by prompts/instant.py:instant_value.

const FOREGROUND = 1;
const BACKGROUND = 0;
const PADDING = -1;
const CORNER_LABELS = [2, 3];

// Gradio may render the template again: find the parts each time, listen on `element`.
const part = (selector) => element.querySelector(selector);
const view = {
  get dataset() {
    return part(".sam-instant").dataset;
  },
};
const note = {
  set textContent(text) {
    part(".sam-instant-note").textContent = text;
  },
};

const state = {
  value: null,
  session: null, // onnxruntime InferenceSession of value.decoder
  features: null, // its image inputs: {name: Tensor}
  resizer: null, // masks.js maskResizer: low-res logits to the view
  points: [], // [[x, y, label], ...] in image pixels
  corners: [], // box corners: one while drawing, two once complete
  logits: null, // Float32Array (4G * 4G): the mask prompt of the next prediction
  mask: null, // Uint8Array (H * W): the current mask
  hover: null, // {at: [x, y], label, time} of the cursor over the image
  busy: false, // a decoding is running; the latest hover waits for it
};

// -- loading ------------------------------------------------------------------------------------

function fileUrl(path) {
  const root = (window.gradio_config && window.gradio_config.root) || "";
  return `${root.replace(/\/$/, "")}/gradio_api/file=${path}`;
}

async function gunzip(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const stream = response.body.pipeThrough(new DecompressionStream("gzip"));
  return new Response(stream).arrayBuffer();
}

async function runtime(folder) {
  // One runtime per page, shared by every instant view: the wasm binary is fetched once.
  if (!window.samInstantRuntime) {
    window.samInstantRuntime = (async () => {
      const ort = await import(fileUrl(`${folder}/ort.wasm.bundle.min.mjs`));
      // threads need SharedArrayBuffer, which only a cross-origin isolated page has (COOP
      // and COEP headers); at most 4, the cap of onnxruntime-web's own default
      const cores = Math.min(navigator.hardwareConcurrency || 1, 4);
      ort.env.wasm.numThreads = self.crossOriginIsolated ? cores : 1;
      ort.env.wasm.proxy = false;
      ort.env.wasm.wasmBinary = await gunzip(fileUrl(`${folder}/ort-wasm-simd-threaded.wasm.gz`));
      return ort;
    })();
  }
  return window.samInstantRuntime;
}

async function floats(path) {
  const response = await fetch(fileUrl(path));
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return new Float32Array(await response.arrayBuffer());
}

const sessions = new Map(); // decoder path -> Promise<InferenceSession>

async function load(value) {
  state.value = value;
  state.hover = null;
  if (!value || !value.decoder) {
    view.dataset.state = "off";
    part(".sam-instant img").removeAttribute("src");
    draw();
    return;
  }
  view.dataset.state = "loading";
  view.dataset.mode = value.mode;
  note.textContent = "Loading the in-browser decoder…";
  part(".sam-instant img").src = fileUrl(value.image); // the picture, while the decoder loads
  const started = performance.now();
  try {
    if (!("DecompressionStream" in window) || typeof WebAssembly !== "object") {
      throw new Error("this browser lacks WebAssembly or DecompressionStream");
    }
    const ort = await runtime(value.runtime);
    if (!sessions.has(value.decoder)) {
      sessions.set(
        value.decoder,
        ort.InferenceSession.create(fileUrl(value.decoder), {
          executionProviders: ["wasm"],
          graphOptimizationLevel: "all",
        }),
      );
    }
    const [session, ...features] = await Promise.all([
      sessions.get(value.decoder),
      ...value.features.map((feature) => floats(feature.path)),
    ]);
    if (state.value !== value) return; // a newer value arrived meanwhile
    state.session = session;
    state.features = Object.fromEntries(
      value.features.map(({ name, shape }, i) => [
        name,
        new ort.Tensor("float32", features[i], shape),
      ]),
    );
    state.resizer = resizerFor(value);
    state.ort = ort;
    view.dataset.threads = String(ort.env.wasm.numThreads);
  } catch (error) {
    view.dataset.state = "failed";
    note.textContent = `Instant mode is off: ${error.message}`;
    trigger("unavailable", { reason: String(error.message || error) });
    return;
  }
  state.points = value.points.map((p) => p.slice());
  state.corners = value.corners.map((c) => c.slice());
  state.logits = value.logits ? await floats(value.logits) : null;
  state.mask = value.mask ? decodeRle(value.mask) : null;
  view.dataset.state = "ready";
  note.textContent = "";
  draw();
  trigger("ready", { load_ms: performance.now() - started });
}

// -- prompts and decoding -----------------------------------------------------------------------

function modeLabel(event) {
  const mode = state.value.mode;
  if (mode === "box") return null;
  const background = mode === "background" || (event && event.shiftKey);
  return background ? BACKGROUND : FOREGROUND;
}

function completeBox(corners) {
  if (corners.length !== 2) return null;
  const [[xa, ya], [xb, yb]] = corners;
  return [Math.min(xa, xb), Math.min(ya, yb), Math.max(xa, xb), Math.max(ya, yb)];
}

function resizerFor(value) {
  const view = [value.view_height, value.view_width];
  return maskResizer(value.mask_input_size, value.mask_frame, value.mask_crop, view);
}

// The prompts in the encoder's frame (value.input_size), ordered as the model's prompt encoder
// orders them: SAM's points, then the box's corners (labels 2 and 3) or else a padding point
// (sam.onnx_model.decoder_inputs); SAM 2's box corners, the points, then a padding point always
// (sam.onnx_sam2.sam2_decoder_inputs).
function decoderInputs(points, box, logits) {
  const { width, height, input_size: frame, box_first: boxFirst } = state.value;
  const sx = frame[1] / width;
  const sy = frame[0] / height;
  const corners = box
    ? [
        [box[0], box[1], CORNER_LABELS[0]],
        [box[2], box[3], CORNER_LABELS[1]],
      ]
    : [];
  const all = boxFirst
    ? [...corners, ...points, [0, 0, PADDING]]
    : [...points, ...(box ? corners : [[0, 0, PADDING]])];
  const coords = new Float32Array(all.length * 2);
  const labels = new Float32Array(all.length);
  all.forEach(([x, y, label], i) => {
    coords[2 * i] = x * sx;
    coords[2 * i + 1] = y * sy;
    labels[i] = label;
  });
  const lowRes = state.value.mask_input_size;
  const { Tensor } = state.ort;
  return {
    ...state.features,
    point_coords: new Tensor("float32", coords, [1, all.length, 2]),
    point_labels: new Tensor("float32", labels, [1, all.length]),
    mask_input: new Tensor("float32", logits || new Float32Array(lowRes * lowRes), [
      1,
      1,
      lowRes,
      lowRes,
    ]),
    has_mask_input: new Tensor("float32", new Float32Array([logits ? 1 : 0]), [1]),
  };
}

// The three multimask outputs, best predicted IoU first (ties keep their order), as
// SamPredictor.predict_ranked gives them; each resizes its mask to the view when first asked
// (a hover draws only the best). The latest prompts' answer is kept: a click where the cursor
// rests reuses the hover's decoding, done or running.
let running = Promise.resolve(); // one run at a time: a session does not run concurrently
const latest = { key: null, logits: null, session: null, features: null, candidates: null };

function decode(points, box, logits) {
  const key = JSON.stringify([points, box]);
  const same = latest.key === key && latest.logits === logits;
  if (!same || latest.session !== state.session || latest.features !== state.features) {
    Object.assign(latest, { key, logits, session: state.session, features: state.features });
    latest.candidates = run(points, box, logits);
    latest.candidates.catch(() => {
      latest.key = null; // a failed run is not reused
    });
  }
  return latest.candidates;
}

async function run(points, box, logits) {
  const inputs = decoderInputs(points, box, logits);
  const result = running.then(async () => {
    const started = performance.now();
    const outputs = await state.session.run(inputs);
    view.dataset.runMs = (performance.now() - started).toFixed(1); // the decoder alone
    return outputs;
  });
  running = result.catch(() => {});
  const outputs = await result;
  const scores = outputs.iou_predictions.data;
  const lowRes = outputs.low_res_masks.data;
  const pixels = state.value.mask_input_size ** 2;
  const resizer = state.resizer;
  const ranked = [1, 2, 3].sort((a, b) => scores[b] - scores[a] || a - b);
  return ranked.map((index) => {
    let mask = null;
    const logits = lowRes.slice(index * pixels, (index + 1) * pixels);
    return {
      index: index - 1,
      score: scores[index],
      lowRes: logits,
      mask: () => (mask ||= lowResMask(logits, resizer)), // (view_height * view_width) bits
    };
  });
}

// -- hover and click ------------------------------------------------------------------------------

function pixelAt(event) {
  const rect = part(".sam-instant canvas").getBoundingClientRect();
  const x = Math.floor(((event.clientX - rect.left) * state.value.width) / rect.width);
  const y = Math.floor(((event.clientY - rect.top) * state.value.height) / rect.height);
  if (x < 0 || y < 0 || x >= state.value.width || y >= state.value.height) return null;
  return [x, y];
}

// What a click at `at` would predict from: the points and complete box after it.
function promptsWith(at, label) {
  if (label !== null)
    return { points: [...state.points, [...at, label]], box: completeBox(state.corners) };
  if (state.corners.length === 1) {
    const [x0, y0] = state.corners[0];
    if (x0 === at[0] || y0 === at[1]) return null;
    return { points: state.points, box: completeBox([state.corners[0], at]) };
  }
  return null; // a first corner alone is no prompt
}

async function hoverLoop() {
  if (state.busy) return;
  state.busy = true;
  try {
    let shown = null;
    while (state.hover && state.hover !== shown) {
      shown = state.hover;
      const prompts = promptsWith(shown.at, shown.label);
      const best = prompts ? (await decode(prompts.points, prompts.box, state.logits))[0] : null;
      if (state.hover !== shown) continue; // moved on meanwhile: decode the latest place
      draw(best ? best.mask() : null, shown);
      view.dataset.hoverMs = (performance.now() - shown.time).toFixed(1);
      view.dataset.hovers = String(Number(view.dataset.hovers || 0) + 1);
    }
  } finally {
    state.busy = false;
  }
}

async function click(event, started) {
  if (view.dataset.state !== "ready") return;
  const at = pixelAt(event);
  if (!at) return;
  note.textContent = "";
  const label = modeLabel(event);
  if (label !== null) {
    state.points.push([...at, label]);
  } else if (state.corners.length === 1) {
    const [x0, y0] = state.corners[0];
    if (x0 === at[0] || y0 === at[1]) {
      note.textContent = "The box has zero area: click a corner diagonally away from the first.";
      return;
    }
    state.corners.push(at);
  } else {
    state.corners = [at];
  }
  const box = completeBox(state.corners);
  let candidates = [];
  if (state.points.length || box) {
    candidates = await decode(state.points, box, state.logits);
  }
  state.logits = candidates.length ? candidates[0].lowRes : null;
  state.mask = candidates.length ? candidates[0].mask() : null;
  state.hover = null;
  draw();
  const drawnMs = performance.now() - started;
  view.dataset.clickMs = drawnMs.toFixed(1);
  view.dataset.clicks = String(Number(view.dataset.clicks || 0) + 1);
  const mode = label === null ? "box" : label === FOREGROUND ? "foreground" : "background";
  const { view_width: width, view_height: height } = state.value;
  const sent = {
    click: { x: at[0], y: at[1], mode },
    points: state.points.map((p) => p.slice()),
    corners: state.corners.map((c) => c.slice()),
    size: [height, width],
    decode_ms: drawnMs,
  };
  // the mask is painted first; the candidates' run lengths for the server are made after
  requestAnimationFrame(() =>
    setTimeout(() => {
      const ranked = candidates.map((c) => ({
        index: c.index,
        score: c.score,
        rle: encodeRle(c.mask(), width, height),
      }));
      trigger("mask", { ...sent, candidates: ranked });
    }),
  );
}

const onCanvas = (event) => event.target.matches && event.target.matches(".sam-instant canvas");
let clicks = Promise.resolve(); // clicks in order, each from the state the previous one left

element.addEventListener("mousemove", (event) => {
  if (!onCanvas(event) || view.dataset.state !== "ready") return;
  const at = pixelAt(event);
  state.hover = at ? { at, label: modeLabel(event), time: performance.now() } : null;
  if (!at) draw();
  else hoverLoop();
});
element.addEventListener("mouseout", (event) => {
  if (!onCanvas(event)) return;
  state.hover = null;
  if (view.dataset.state === "ready") draw();
});
element.addEventListener("click", (event) => {
  if (!onCanvas(event)) return;
  const time = performance.now();
  clicks = clicks
    .then(() => click(event, time))
    .catch((error) => {
      note.textContent = `Decoding failed: ${error.message}`;
    });
});

// -- drawing ----------------------------------------------------------------------------------

function draw(hoverMask = null, hover = null) {
  const canvas = part(".sam-instant canvas");
  const context = canvas.getContext("2d");
  if (state.value && canvas.width !== state.value.view_width) canvas.width = state.value.view_width;
  if (state.value && canvas.height !== state.value.view_height) {
    canvas.height = state.value.view_height;
  }
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.value || view.dataset.state !== "ready") return;
  const [r, g, b] = state.value.colour;
  const mask = hoverMask || state.mask;
  if (mask) {
    const image = context.createImageData(canvas.width, canvas.height);
    const alpha = hoverMask ? 110 : 140;
    const pixels = new Uint32Array(image.data.buffer); // RGBA bytes, little-endian words
    const colour = ((alpha << 24) | (b << 16) | (g << 8) | r) >>> 0;
    for (let i = 0; i < mask.length; i++) {
      if (mask[i]) pixels[i] = colour;
    }
    context.putImageData(image, 0, 0);
  }
  const radius = Math.max(3, Math.round(Math.max(canvas.width, canvas.height) / 150));
  const zoom = canvas.width / state.value.width; // image pixels -> view pixels
  const points =
    hover && hover.label !== null ? [...state.points, [...hover.at, hover.label]] : state.points;
  for (const [x, y, label] of points) {
    context.beginPath();
    context.arc((x + 0.5) * zoom, (y + 0.5) * zoom, radius, 0, 2 * Math.PI);
    context.fillStyle = label === FOREGROUND ? "#22c55e" : "#ef4444";
    context.fill();
    context.lineWidth = Math.max(1, radius / 3);
    context.strokeStyle = "white";
    context.stroke();
  }
  const corners =
    hover && hover.label === null && state.corners.length === 1
      ? [state.corners[0], hover.at]
      : state.corners;
  const box = completeBox(corners);
  if (box) {
    context.lineWidth = Math.max(2, radius / 2);
    context.strokeStyle = `rgb(${r}, ${g}, ${b})`;
    const [x0, y0, x1, y1] = box.map((v) => v * zoom);
    context.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
}

watch("value", () => load(props.value));
load(props.value);
