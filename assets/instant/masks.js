// Masks for instant.js (which runs after this file, in the same js_on_load body): the decoder's
// low-res logits to bits at the view, and COCO's uncompressed RLE (column-major runs, zeros
// first), the form the server reads.

// Bilinear taps of torch's F.interpolate (align_corners=False, no antialias) from `inSize` to
// `outSize` samples: source indices and weights, computed in float32 as torch computes them.
function bilinearTaps(inSize, outSize) {
  const f = Math.fround;
  const scale = f(inSize / outSize);
  const index0 = new Int32Array(outSize);
  const index1 = new Int32Array(outSize);
  const weight1 = new Float32Array(outSize);
  for (let i = 0; i < outSize; i++) {
    const source = Math.max(0, f(f(scale * (i + 0.5)) - 0.5));
    const i0 = Math.min(Math.floor(source), inSize - 1);
    index0[i] = i0;
    index1[i] = i0 < inSize - 1 ? i0 + 1 : i0;
    weight1[i] = Math.min(Math.max(f(source - i0), 0), 1);
  }
  return { index0, index1, weight1 };
}

// One axis of a model's postprocess_masks: `side` low-res samples, upsampled to `frame` samples
// (SAM: the encoder's side; SAM 2: the view's), the first `kept` kept (SAM's padding cropped),
// resized to `out`. Composed, each output sample reads three consecutive low-res samples: base
// (out) and their weights (out, 3); taps of weight 0 (a resize to the same size) are left out.
function axisTaps(side, frame, kept, out) {
  const up = bilinearTaps(side, frame);
  const down = bilinearTaps(kept, out);
  const base = new Int32Array(out);
  const weight = new Float32Array(3 * out);
  for (let i = 0; i < out; i++) {
    let taps = [];
    for (const [u, w] of [
      [down.index0[i], 1 - down.weight1[i]],
      [down.index1[i], down.weight1[i]],
    ]) {
      taps.push([up.index0[u], w * (1 - up.weight1[u])], [up.index1[u], w * up.weight1[u]]);
    }
    taps = taps.filter(([, w]) => w !== 0);
    base[i] = Math.max(0, Math.min(Math.min(...taps.map(([index]) => index)), side - 3));
    for (const [index, w] of taps) weight[3 * i + index - base[i]] += w;
  }
  return { base, weight };
}

// How a value's masks go from low-res logits (side x side) to the view (height x width): upsampled
// to `frame` (H, W), cropped to `resized` (H, W), resized to the view (see axisTaps).
function maskResizer(side, frame, resized, view) {
  const [height, width] = view;
  const rows = axisTaps(side, frame[0], resized[0], height);
  const cols = axisTaps(side, frame[1], resized[1], width);
  // the view's columns in spans of one low-res column base: span k is columns
  // spanStart[k] .. spanStart[k + 1] - 1, all of base spanBase[k]
  const starts = [];
  for (let x = 0; x < width; x++) if (x === 0 || cols.base[x] !== cols.base[x - 1]) starts.push(x);
  const spanStart = Int32Array.from([...starts, width]);
  const spanBase = Int32Array.from(starts, (x) => cols.base[x]);
  return { side, rows, cols, spanStart, spanBase, height, width };
}

// Low-res logits (side * side) -> the mask's bits (height * width) at the view, as the server
// thresholds its postprocessed logits (> 0). A view pixel is a convex combination of a 3x3
// block of low-res logits: where the block is all above or all at most 0, so is the pixel,
// and only pixels of mixed blocks (along the mask's edges) are interpolated.
function lowResMask(logits, resizer) {
  const { side, rows, cols, spanStart, spanBase, height, width } = resizer;
  const [low, high] = blockRange(logits, side);
  const mask = new Uint8Array(height * width);
  const rw = rows.weight;
  const cw = cols.weight;
  for (let y = 0; y < height; y++) {
    const block = rows.base[y] * side;
    const out = y * width;
    const w0 = rw[3 * y];
    const w1 = rw[3 * y + 1];
    const w2 = rw[3 * y + 2];
    for (let k = 0; k < spanBase.length; k++) {
      const j = spanBase[k];
      const x0 = spanStart[k];
      const x1 = spanStart[k + 1];
      if (low[block + j] > 0) {
        mask.fill(1, out + x0, out + x1);
      } else if (high[block + j] > 0) {
        const r0 = block + j;
        const r1 = r0 + side;
        const r2 = r1 + side;
        for (let x = x0; x < x1; x++) {
          const c0 = cw[3 * x];
          const c1 = cw[3 * x + 1];
          const c2 = cw[3 * x + 2];
          const value =
            w0 * (c0 * logits[r0] + c1 * logits[r0 + 1] + c2 * logits[r0 + 2]) +
            w1 * (c0 * logits[r1] + c1 * logits[r1 + 1] + c2 * logits[r1 + 2]) +
            w2 * (c0 * logits[r2] + c1 * logits[r2 + 1] + c2 * logits[r2 + 2]);
          mask[out + x] = value > 0 ? 1 : 0;
        }
      }
    }
  }
  return mask;
}

// The least and greatest logit of each 3x3 block (at its top-left corner; side * side, the
// last two rows and columns unused).
function blockRange(logits, side) {
  const rowLow = new Float32Array(side * side);
  const rowHigh = new Float32Array(side * side);
  for (let i = 0; i < side; i++) {
    for (let j = 0, at = i * side; j < side - 2; j++, at++) {
      const a = logits[at];
      const b = logits[at + 1];
      const c = logits[at + 2];
      rowLow[at] = a < b ? (a < c ? a : c) : b < c ? b : c;
      rowHigh[at] = a > b ? (a > c ? a : c) : b > c ? b : c;
    }
  }
  const low = new Float32Array(side * side);
  const high = new Float32Array(side * side);
  for (let at = 0; at < (side - 2) * side; at++) {
    const a = rowLow[at];
    const b = rowLow[at + side];
    const c = rowLow[at + 2 * side];
    low[at] = a < b ? (a < c ? a : c) : b < c ? b : c;
    const d = rowHigh[at];
    const e = rowHigh[at + side];
    const f = rowHigh[at + 2 * side];
    high[at] = d > e ? (d > f ? d : f) : e > f ? e : f;
  }
  return [low, high];
}

function encodeRle(mask, width, height) {
  const counts = [];
  let previous = 0;
  let length = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const bit = mask[y * width + x];
      if (bit !== previous) {
        counts.push(length);
        length = 0;
        previous = bit;
      }
      length++;
    }
  }
  counts.push(length);
  return { size: [height, width], counts };
}

function decodeRle(rle) {
  const [height, width] = rle.size;
  const mask = new Uint8Array(height * width);
  let position = 0;
  rle.counts.forEach((length, i) => {
    if (i % 2) {
      for (let k = position; k < position + length; k++) {
        mask[(k % height) * width + Math.floor(k / height)] = 1;
      }
    }
    position += length;
  });
  return mask;
}
