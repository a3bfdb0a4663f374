// Limits on what one call may hand to webclip, checked before anything is copied into wasm
// memory or posted to the worker. The same numbers as src/limits.rs (a Rust test compares
// them), which checks them again inside wasm; js/README.md documents them.

import { webclipError } from './errors.js';

/** Images or texts per forward pass (`maxBatch`). */
export const MAX_BATCH = 256;
/** Texts, or images, in one call. */
export const MAX_ITEMS_PER_CALL = 65536;
/** One text, in UTF-8 bytes. */
export const MAX_TEXT_BYTES = 65536;
/** All the input bytes of one call: encoded images, RGBA pixels, texts. */
export const MAX_REQUEST_BYTES = 536870912;
/** Pixels of one image (its declared width times height). */
export const MAX_IMAGE_PIXELS = 100000000;

const badInput = (message) => webclipError('bad-input', message);
const encoder = new TextEncoder();

/** UTF-8 length of `s`, without encoding it when its length already decides. */
function utf8Length(s) {
  // A UTF-16 unit is 1 to 3 UTF-8 bytes.
  if (s.length * 3 <= MAX_TEXT_BYTES) return s.length;
  return encoder.encode(s).length;
}

export function checkMaxBatch(n) {
  if (n > MAX_BATCH) throw badInput(`webclip: maxBatch ${n} is over the limit of ${MAX_BATCH} images or texts per forward pass`);
}

export function checkCount(n, what) {
  if (n > MAX_ITEMS_PER_CALL) throw badInput(`webclip: ${n} ${what} in one call, over the limit of ${MAX_ITEMS_PER_CALL}; split the call`);
}

export function checkRequestBytes(n) {
  if (n > MAX_REQUEST_BYTES) {
    throw badInput(`webclip: the call holds ${n} bytes of input, over the limit of ${MAX_REQUEST_BYTES} bytes per call; split the call`);
  }
}

/** The texts of one call (strings already checked): count, each length, total size. */
export function checkTexts(texts) {
  checkCount(texts.length, 'texts');
  let total = 0;
  for (let i = 0; i < texts.length; i++) {
    const n = utf8Length(texts[i]);
    if (n > MAX_TEXT_BYTES) {
      throw badInput(`webclip: text ${i} is ${n} bytes long, over the limit of ${MAX_TEXT_BYTES} bytes (the model reads only its first tokens)`);
    }
    total += n;
  }
  checkRequestBytes(total);
}

/** Width times height of an image, before a canvas of that size is made. */
export function checkPixels(width, height, what) {
  const n = width * height;
  if (n > MAX_IMAGE_PIXELS) {
    throw webclipError('bad-image', `webclip: ${what} is ${width}x${height} = ${n} pixels, more than the limit of ${MAX_IMAGE_PIXELS}`);
  }
}

/** The bytes an image input will take once read (0 where it is not known yet). */
export function inputBytes(img) {
  if (img == null || typeof img !== 'object') return 0;
  if (img instanceof ArrayBuffer || ArrayBuffer.isView(img)) return img.byteLength;
  if (typeof Blob !== 'undefined' && img instanceof Blob) return img.size;
  if (ArrayBuffer.isView(img.data)) return img.data.byteLength;
  const w = img.naturalWidth || img.videoWidth || img.displayWidth || img.width;
  const h = img.naturalHeight || img.videoHeight || img.displayHeight || img.height;
  return Number.isFinite(w * h) ? w * h * 4 : 0;
}

/** The images of one call: count and total size, before any is read or posted. */
export function checkImages(images) {
  checkCount(images.length, 'images');
  let total = 0;
  for (const img of images) total += inputBytes(img);
  checkRequestBytes(total);
}
