// The generator in the browser: latents drawn exactly as runtime/latents.py draws them, the
// exported ONNX model run by onnxruntime-web (WebAssembly), and the page's controls.
// No build step: index.html loads this file as a module, and Node imports it in the tests.

// ---- latents: Philox-4x64-10 and numpy's float32 normal (ziggurat) and uniform -------------
export const MAX_SEED = (1n << 128n) - 1n; // Philox's key width
export const MAX_INDEX = (1n << 128n) - 1n; // image indices live in the counter's upper 128 bits
const MASK64 = (1n << 64n) - 1n;
const PHILOX_M = [0xD2E7470EE14C6C93n, 0xCA5A826395121157n];
const PHILOX_W = [0x9E3779B97F4A7C15n, 0xBB67AE8584CAA73Bn];

// One Philox-4x64 block of ten rounds: four 64-bit counter words -> four 64-bit outputs.
function philox(counter, key) {
  let [c0, c1, c2, c3] = counter;
  let [k0, k1] = key;
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + PHILOX_W[0]) & MASK64;
      k1 = (k1 + PHILOX_W[1]) & MASK64;
    }
    const p0 = PHILOX_M[0] * c0, p1 = PHILOX_M[1] * c2; // 128-bit products
    [c0, c1, c2, c3] = [(p1 >> 64n) ^ c1 ^ k0, p1 & MASK64, (p0 >> 64n) ^ c3 ^ k1, p0 & MASK64];
  }
  return [c0, c1, c2, c3];
}

// numpy.random.Philox(key=seed, counter=index << 128), read 32 bits at a time as numpy's
// next_uint32 does: each 64-bit output gives its low half, then its high half.
class Philox {
  constructor(seed, index) {
    this.key = [seed & MASK64, seed >> 64n];
    this.counter = [0n, 0n, index & MASK64, index >> 64n];
    this.words = [];
    this.pos = 0;
  }

  next32() {
    if (this.pos === this.words.length) {
      // numpy increments the 256-bit counter before each block, carrying across words
      for (let i = 0; i < 4; i++) {
        this.counter[i] = (this.counter[i] + 1n) & MASK64;
        if (this.counter[i] !== 0n) break;
      }
      this.words = philox(this.counter, this.key).flatMap((w) => [Number(w & 0xFFFFFFFFn), Number(w >> 32n)]);
      this.pos = 0;
    }
    return this.words[this.pos++];
  }

  nextFloat() { // numpy's next_float: 24 random bits / 2**24, exact in float32
    return (this.next32() >>> 8) * 2 ** -24;
  }
}

// numpy's 256-layer ziggurat tables for float32 (ki, wi, fi), rebuilt with Marsaglia and
// Tsang's recurrence in double precision, then rounded as numpy's tables are.
const ZIG_R = 3.6541528853610088, ZIG_V = 4.92867323399e-3;
const ZIG_R_F = Math.fround(ZIG_R), ZIG_INV_R_F = Math.fround(1 / ZIG_R);
const KI = new Uint32Array(256), WI = new Float32Array(256), FI = new Float32Array(256);
{
  let x = ZIG_R;
  const q = ZIG_V / Math.exp(-0.5 * x * x);
  [KI[0], WI[0], WI[255], FI[0], FI[255]] = [Math.round((x / q) * 2 ** 23), q / 2 ** 23, x / 2 ** 23, 1, Math.exp(-0.5 * x * x)];
  for (let i = 254; i >= 1; i--) {
    const next = Math.sqrt(-2 * Math.log(ZIG_V / x + Math.exp(-0.5 * x * x)));
    KI[i + 1] = Math.round((next / x) * 2 ** 23);
    x = next;
    [FI[i], WI[i]] = [Math.exp(-0.5 * x * x), x / 2 ** 23];
  }
}
const f32 = Math.fround;

// numpy's random_standard_normal_f, operation for operation (float32 where numpy uses float).
function normal(rng) {
  for (;;) {
    const r = rng.next32();
    const idx = r & 0xff, rabs = (r >>> 9) & 0x7fffff;
    const x = ((r >>> 8) & 1 ? -1 : 1) * f32(rabs * WI[idx]);
    if (rabs < KI[idx]) return x; // 99.3% of draws end here
    if (idx === 0) { // the tail beyond r
      for (;;) {
        const xx = f32(-ZIG_INV_R_F * f32(Math.log1p(-rng.nextFloat())));
        const yy = -f32(Math.log1p(-rng.nextFloat()));
        if (f32(yy + yy) > f32(xx * xx)) return ((rabs >>> 8) & 1 ? -1 : 1) * f32(ZIG_R_F + xx);
      }
    }
    if (f32(f32(f32(FI[idx - 1] - FI[idx]) * rng.nextFloat()) + FI[idx]) < Math.exp(-0.5 * x * x)) return x;
  }
}

/** float32 latent of image `index` under `seed` (BigInts), as runtime.latents.latents draws it. */
export function latent(seed, index, nz, distribution = "normal") {
  const rng = new Philox(BigInt(seed), BigInt(index));
  const z = new Float32Array(nz);
  for (let i = 0; i < nz; i++) z[i] = distribution === "normal" ? normal(rng) : rng.nextFloat() * 2 - 1;
  return z;
}

/** float32 (n * nz) latents of images start .. start+n-1, one after another. */
export function latents(seed, start, n, nz, distribution = "normal") {
  const z = new Float32Array(n * nz);
  for (let k = 0; k < n; k++) z.set(latent(seed, BigInt(start) + BigInt(k), nz, distribution), k * nz);
  return z;
}

/** Spherical interpolation in float64, rounded to float32: runtime.latents.slerp's formula. */
export function slerp(z0, z1, t) {
  let dot = 0, n0 = 0, n1 = 0;
  for (let i = 0; i < z0.length; i++) [dot, n0, n1] = [dot + z0[i] * z1[i], n0 + z0[i] ** 2, n1 + z1[i] ** 2];
  const omega = Math.acos(Math.min(1, Math.max(-1, dot / (Math.sqrt(n0) * Math.sqrt(n1)))));
  const s = Math.sin(omega), a = Math.sin((1 - t) * omega), b = Math.sin(t * omega);
  return z0.map((v, i) => (s < 1e-6 ? (1 - t) * v + t * z1[i] : (a * v + b * z1[i]) / s));
}

/** The paper's vector arithmetic a - b + c, in float32 as numpy computes it. */
export function arithmetic(a, b, c) {
  return a.map((v, i) => f32(f32(v - b[i]) + c[i]));
}

// ---- the page -------------------------------------------------------------------------------
class InputError extends Error {}
const $ = (id) => document.getElementById(id);
const WALK_STEPS = 100; // the slider's positions: t = k / 100, as numpy.linspace(0, 1, 101)[k]
let ort, info, session;
let shown = { seed: 0n, index: 0n }; // the single image on screen, for its download name
let queue = Promise.resolve(); // one model run at a time: a WASM session runs one call at once
let done = 0; // actions finished, in document.body.dataset.done: tests and the benchmark wait on it

/** The whole number in text field `id`, as a BigInt in [0, max]; an InputError saying why not. */
function readWhole(id, what, max = MAX_INDEX) {
  const text = $(id).value.trim();
  if (!/^\d+$/.test(text)) throw new InputError(`${what} must be a whole number ≥ 0, not "${text}"`);
  const value = BigInt(text);
  if (value > max) throw new InputError(`${what} ${text} is past the last one, 2**128 − 1`);
  return value;
}

/** Run the model on n latents: uint8 (n, H, W, C) images; the page shows the ms per image. */
export async function infer(z, n) {
  const t0 = performance.now();
  const out = await session.run({ [info.input]: new ort.Tensor("float32", z, [n, info.nz]) });
  const ms = (performance.now() - t0) / n;
  $("timing").textContent = `· ${ms.toFixed(2)} ms/image (batch of ${n})`;
  return out[info.output].data;
}

// n images (n, H, W, C) onto `canvas` at their own size, `cols` to a row; CSS scales them up.
function draw(canvas, images, n, cols) {
  const size = info.image_size, c = info.channels;
  canvas.width = cols * size;
  canvas.height = Math.ceil(n / cols) * size;
  const ctx = canvas.getContext("2d"), rgba = ctx.createImageData(canvas.width, canvas.height);
  for (let k = 0; k < n; k++) {
    const left = (k % cols) * size, top = Math.floor(k / cols) * size;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const src = ((k * size + y) * size + x) * c, dst = ((top + y) * canvas.width + left + x) * 4;
        for (let ch = 0; ch < 3; ch++) rgba.data[dst + ch] = images[src + (c === 3 ? ch : 0)];
        rgba.data[dst + 3] = 255;
      }
    }
  }
  ctx.putImageData(rgba, 0, 0);
}

const z = (seed, index) => latent(seed, index, info.nz, info.latent);

async function showImage() {
  const seed = readWhole("seed", "seed", MAX_SEED), index = readWhole("index", "index");
  draw($("image"), await infer(z(seed, index), 1), 1, 1);
  shown = { seed, index };
}

async function showGrid() {
  const seed = readWhole("seed", "seed", MAX_SEED), start = readWhole("index", "index");
  const n = Number($("count").value);
  if (start + BigInt(n - 1) > MAX_INDEX) throw new InputError(`images ${start}… go past the last index, 2**128 − 1`);
  draw($("grid"), await infer(latents(seed, start, n, info.nz, info.latent), n), n, Math.sqrt(n));
}

async function showWalk() {
  const seed = readWhole("seed", "seed", MAX_SEED);
  const a = readWhole("walk-a", "walk start index"), b = readWhole("walk-b", "walk end index");
  const k = Number($("walk-t").value), t = k === WALK_STEPS ? 1 : k * (1 / WALK_STEPS);
  $("walk-t-value").textContent = t.toFixed(2);
  draw($("walk"), await infer(slerp(z(seed, a), z(seed, b), t), 1), 1, 1);
}

async function showArithmetic() {
  const seed = readWhole("seed", "seed", MAX_SEED);
  const [a, b, c] = ["a", "b", "c"].map((name) => z(seed, readWhole(`arith-${name}`, `index ${name}`)));
  const batch = new Float32Array(4 * info.nz);
  [a, b, c, arithmetic(a, b, c)].forEach((v, k) => batch.set(v, k * info.nz));
  draw($("arith"), await infer(batch, 4), 4, 4);
}

function download() {
  $("image").toBlob((blob) => {
    const link = Object.assign(document.createElement("a"), {
      href: URL.createObjectURL(blob), download: `dcgan-seed${shown.seed}-${shown.index}.png` });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }, "image/png");
}

// Every action goes through here: in turn, with any error shown on the page, never thrown.
function act(action) {
  queue = queue.then(async () => {
    try {
      await action();
      $("error").textContent = "";
    } catch (e) {
      $("error").textContent = e instanceof InputError ? e.message : `error: ${e.message ?? e}`;
    }
    document.body.dataset.done = String(++done);
  });
  return queue;
}

async function loadModel() {
  const precision = $("precision").value;
  $("status").textContent = `Loading the ${precision} model…`;
  session = await ort.InferenceSession.create(info.models[precision].file, { executionProviders: ["wasm"] });
  $("status").textContent = `${info.name}: ${precision}, nz ${info.nz}, ${info.latent} latents ·`;
}

async function start() {
  const params = new URLSearchParams(location.search);
  try {
    const response = await fetch("model.json");
    if (!response.ok) throw new Error(`model.json: HTTP ${response.status}`);
    [ort, info] = await Promise.all([import("./ort/ort.wasm.min.mjs"), response.json()]);
  } catch (e) {
    $("status").textContent = "";
    $("error").textContent = `cannot load the model description or onnxruntime-web (${e.message}) — re-export with dcgan-export --format web`;
    return;
  }
  // WebAssembly threads need SharedArrayBuffer, which browsers give only to cross-origin isolated pages
  const asked = Math.floor(Number(params.get("threads"))), cpus = Math.min(4, navigator.hardwareConcurrency || 1);
  const threads = crossOriginIsolated ? (asked >= 1 ? asked : cpus) : 1;
  ort.env.wasm.numThreads = threads;
  $("backend").textContent = `onnxruntime-web ${info.ort_web}, WebAssembly SIMD, ${threads} thread${threads > 1 ? "s" : ""}` +
    (crossOriginIsolated ? "" : " (this page is not cross-origin isolated, so one thread: serve it with COOP/COEP headers, as dcgan-serve does)");
  for (const precision of Object.keys(info.models)) $("precision").add(new Option(precision, precision));
  if (params.get("precision") in info.models) $("precision").value = params.get("precision");
  for (const id of ["seed", "index"]) if (params.has(id)) $(id).value = params.get(id);

  $("show").onclick = () => act(showImage);
  $("download").onclick = download;
  $("grid-show").onclick = () => act(showGrid);
  $("walk-t").oninput = () => act(showWalk);
  for (const id of ["walk-a", "walk-b"]) $(id).onchange = () => act(showWalk);
  $("arith-show").onclick = () => act(showArithmetic);
  $("precision").onchange = () => act(loadModel).then(() => act(showImage));
  for (const id of ["seed", "index"]) $(id).onkeydown = (e) => e.key === "Enter" && act(showImage);

  await act(loadModel);
  await act(showImage);
  document.body.dataset.firstImageMs = performance.now().toFixed(1); // read by the benchmark
  await act(showWalk);
  await act(showArithmetic);
  await act(showGrid);
  document.body.dataset.ready = "1";
}

if (globalThis.document) start();
