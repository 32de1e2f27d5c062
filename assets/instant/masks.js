// Masks for instant.js (which runs after this file, in the same js_on_load body): logits to
// bits, and COCO's uncompressed RLE (column-major runs, zeros first), the form the server reads.

function threshold(logits) {
  const mask = new Uint8Array(logits.length);
  for (let i = 0; i < logits.length; i++) mask[i] = logits[i] > 0 ? 1 : 0;
  return mask;
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
