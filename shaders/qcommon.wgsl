// Shared by every quantized-weight kernel (qmatvec, qmatmul, qembed): linear.ts prepends this text (WGSL has no
// includes). The constants come from the format table (src/format/weight-format.ts formatConstants).
// Spec §5.2-5.4: each row is an LSB-first bit stream of BITS-bit codes, so 32 values are exactly BITS words and every
// group of GS ≥ 32 values starts on a word boundary. MODE says what a code is:
//   0 affine:  w = scale · q + bias, q the unsigned code (MLX affine)
//   1 E2M1:    w = scale · fp4(q)  (mxfp4, nvfp4; no bias)
//   2 E4M3:    w = scale · fp8(q)  (mxfp8, compressed-tensors / Qwen FP8; no bias)
// GS = 16 (nvfp4) puts two groups in one 32-value chunk: chunk_dot_g scales each half itself.

override MODE: u32 = 0u;
override BITS: u32 = 4u;
override GS: u32 = 64u;
// Storage type of scales (and affine biases): 0 = bf16, 1 = f16, 2 = f32 (16-bit types hold two values per word,
// element i in the low half when i is even); one byte per group: 3 = E8M0 (2^(code − 127)), 4 = E4M3.
override SDT: u32 = 0u;

// Declared as vec4 words so 4- and 8-bit chunks (always 16-byte aligned: a row is cols·bits/32 words with cols a
// multiple of 32) load with one or two 16-byte loads; createGpuLinear pads the buffer to 16 bytes.
@group(0) @binding(1) var<storage, read> W: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> S: array<u32>;
@group(0) @binding(3) var<storage, read> B: array<u32>;

fn word(i: u32) -> u32 { return W[i >> 2u][i & 3u]; }

fn qmask() -> u32 { return (1u << BITS) - 1u; }

// FP4 E2M1 codes (bit 3 the sign) as f32: magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6. From code 2 up the three bits are
// exponent:mantissa of a float with bias 1, so they slot into an f32's exponent (+126) and top mantissa bit.
fn e2m1(q: vec4<u32>) -> vec4<f32> {
  let k = q & vec4<u32>(7u);
  let normal = bitcast<vec4<f32>>((k << vec4<u32>(22u)) + vec4<u32>(0x3f000000u));
  let mag = select(normal, vec4<f32>(k) * 0.5, k < vec4<u32>(2u));
  return select(mag, -mag, (q & vec4<u32>(8u)) != vec4<u32>(0u));
}

// FP8 E4M3 (the "fn" variant, bias 7) as f32: exponent and mantissa shift into an f32 (+120 on the exponent);
// subnormals (exponent 0) are m/8 · 2^-6. 0x7f/0xff (NaN in OCP) read as 480, as in MLX; the loader refuses them.
fn e4m3(q: vec4<u32>) -> vec4<f32> {
  let normal = bitcast<vec4<f32>>(((q & vec4<u32>(0x7fu)) << vec4<u32>(20u)) + vec4<u32>(0x3c000000u));
  let sub = vec4<f32>(q & vec4<u32>(7u)) * (1.0 / 512.0);
  let mag = select(normal, sub, (q & vec4<u32>(0x78u)) == vec4<u32>(0u));
  return select(mag, -mag, (q & vec4<u32>(0x80u)) != vec4<u32>(0u));
}

// Codes as weights before scaling (affine: the code itself).
fn decode4(q: vec4<u32>) -> vec4<f32> {
  if (MODE == 1u) { return e2m1(q); }
  if (MODE == 2u) { return e4m3(q); }
  return vec4<f32>(q);
}

// Element i of a scale/bias array in its storage dtype. bf16 → f32 is a plain shift into the high half, and
// unpack2x16float is core WGSL, so no f16 extension is needed.
fn load_sdt(buf: u32, i: u32) -> f32 {
  var w: u32;
  if (SDT >= 3u) {
    // One byte per group; only scales are stored this way (the formats have no biases).
    let b = (S[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
    // E8M0: 2^(b − 127) is the f32 with exponent field b; b = 0 (2^-127, subnormal in f32) reads as 0.
    if (SDT == 3u) { return bitcast<f32>(b << 23u); }
    return e4m3(vec4<u32>(b)).x;
  }
  if (SDT == 2u) {
    if (buf == 0u) { w = S[i]; } else { w = B[i]; }
    return bitcast<f32>(w);
  }
  if (buf == 0u) { w = S[i >> 1u]; } else { w = B[i >> 1u]; }
  let odd = (i & 1u) != 0u;
  if (SDT == 0u) {
    return bitcast<f32>(select(w << 16u, w & 0xffff0000u, odd));
  }
  let h = unpack2x16float(w);
  return select(h.x, h.y, odd);
}

// (scale, bias) of group index i (row-major over [rows, cols / GS]); the float formats have no bias.
fn scale_bias(i: u32) -> vec2<f32> {
  if (MODE != 0u) { return vec2<f32>(load_sdt(0u, i), 0.0); }
  return vec2<f32>(load_sdt(0u, i), load_sdt(1u, i));
}

// 64-bit funnel shift: bits [off, off + 32) of the pair hi:lo, for off < 32. Shifting hi in two steps keeps every
// shift amount below 32 (off = 0 then contributes nothing from hi).
fn funnel(lo: u32, hi: u32, off: u32) -> u32 {
  return (lo >> off) | ((hi << 1u) << (31u - off));
}

// Four consecutive BITS-bit values starting at bit 0 of u (bits above 4·BITS are ignored), decoded per MODE.
fn quad(u: u32) -> vec4<f32> {
  let sh = vec4<u32>(0u, BITS, 2u * BITS, 3u * BITS);
  return decode4((vec4<u32>(u) >> sh) & vec4<u32>(qmask()));
}

// One code as a weight before scaling (the GEMM's tile loader).
fn decode1(q: u32) -> f32 { return decode4(vec4<u32>(q)).x; }

// The 32 codes of one chunk (words wb .. wb + BITS) as 8 quads (the embedding gather writes them out), decoded with constant shifts per bit width: the
// quad starting at stream bit p = 4·k·BITS lives in word p / 32 at offset p % 32, or straddles two words.
fn chunk_codes(wb: u32) -> array<vec4<f32>, 8> {
  var q: array<vec4<f32>, 8>;
  switch BITS {
    case 2u: {
      let w0 = word(wb); let w1 = word(wb + 1u);
      q[0] = quad(w0); q[1] = quad(w0 >> 8u); q[2] = quad(w0 >> 16u); q[3] = quad(w0 >> 24u);
      q[4] = quad(w1); q[5] = quad(w1 >> 8u); q[6] = quad(w1 >> 16u); q[7] = quad(w1 >> 24u);
    }
    case 3u: {
      let w0 = word(wb); let w1 = word(wb + 1u); let w2 = word(wb + 2u);
      q[0] = quad(w0); q[1] = quad(w0 >> 12u); q[2] = quad(funnel(w0, w1, 24u)); q[3] = quad(w1 >> 4u);
      q[4] = quad(w1 >> 16u); q[5] = quad(funnel(w1, w2, 28u)); q[6] = quad(w2 >> 8u); q[7] = quad(w2 >> 20u);
    }
    case 4u: {
      let w0 = word(wb); let w1 = word(wb + 1u); let w2 = word(wb + 2u); let w3 = word(wb + 3u);
      q[0] = quad(w0); q[1] = quad(w0 >> 16u); q[2] = quad(w1); q[3] = quad(w1 >> 16u);
      q[4] = quad(w2); q[5] = quad(w2 >> 16u); q[6] = quad(w3); q[7] = quad(w3 >> 16u);
    }
    case 5u: {
      let w0 = word(wb); let w1 = word(wb + 1u); let w2 = word(wb + 2u); let w3 = word(wb + 3u); let w4 = word(wb + 4u);
      q[0] = quad(w0); q[1] = quad(funnel(w0, w1, 20u)); q[2] = quad(w1 >> 8u); q[3] = quad(funnel(w1, w2, 28u));
      q[4] = quad(funnel(w2, w3, 16u)); q[5] = quad(w3 >> 4u); q[6] = quad(funnel(w3, w4, 24u)); q[7] = quad(w4 >> 12u);
    }
    case 6u: {
      let w0 = word(wb); let w1 = word(wb + 1u); let w2 = word(wb + 2u);
      let w3 = word(wb + 3u); let w4 = word(wb + 4u); let w5 = word(wb + 5u);
      q[0] = quad(w0); q[1] = quad(funnel(w0, w1, 24u)); q[2] = quad(funnel(w1, w2, 16u)); q[3] = quad(w2 >> 8u);
      q[4] = quad(w3); q[5] = quad(funnel(w3, w4, 24u)); q[6] = quad(funnel(w4, w5, 16u)); q[7] = quad(w5 >> 8u);
    }
    default: {
      for (var k = 0u; k < 8u; k++) { q[k] = quad(word(wb + k)); }
    }
  }
  return q;
}

// Dot product of one chunk's 32 codes with the x values in xs (x[32c .. 32c+32) in order), without materialising the
// codes. For 2-, 4- and 8-bit codes the masks leave one code per byte, and unpack4x8unorm turns four bytes into four
// floats in one step (code / 255; the 255 is put back once per chunk). The x operand is permuted to match which code
// each byte holds; 3-, 5- and 6-bit codes straddle bytes and go through quad().
var<private> xs: array<vec4<f32>, 8>;

// Codes 8j .. 8j+7 of a 4-bit word: byte k holds code 8j+2k (low nibble) and 8j+2k+1 (high nibble).
fn dot_w4(w: u32, a: vec4<f32>, b: vec4<f32>) -> f32 {
  let lo = unpack4x8unorm(w & 0x0f0f0f0fu);
  let hi = unpack4x8unorm((w >> 4u) & 0x0f0f0f0fu);
  return dot(lo, vec4<f32>(a.x, a.z, b.x, b.z)) + dot(hi, vec4<f32>(a.y, a.w, b.y, b.w));
}

// Codes 16j .. 16j+15 of a 2-bit word: after >> 2k, byte b holds code 16j + 4b + k.
fn dot_w2(w: u32, a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>) -> f32 {
  let m = 0x03030303u;
  return dot(unpack4x8unorm(w & m), vec4<f32>(a.x, b.x, c.x, d.x))
    + dot(unpack4x8unorm((w >> 2u) & m), vec4<f32>(a.y, b.y, c.y, d.y))
    + dot(unpack4x8unorm((w >> 4u) & m), vec4<f32>(a.z, b.z, c.z, d.z))
    + dot(unpack4x8unorm((w >> 6u) & m), vec4<f32>(a.w, b.w, c.w, d.w));
}

// The float formats (4- or 8-bit codes, always 16-byte aligned chunks): decoded quads against xs. g is the chunk's
// first group; with GS = 16 the chunk holds groups g and g + 1, scaled here (chunk_scales then passes 1).
fn chunk_dot_fp(wb: u32, g: u32) -> f32 {
  if (BITS == 4u) {
    let v = W[wb >> 2u];
    let h0 = dot(quad(v.x), xs[0]) + dot(quad(v.x >> 16u), xs[1]) + dot(quad(v.y), xs[2]) + dot(quad(v.y >> 16u), xs[3]);
    let h1 = dot(quad(v.z), xs[4]) + dot(quad(v.z >> 16u), xs[5]) + dot(quad(v.w), xs[6]) + dot(quad(v.w >> 16u), xs[7]);
    if (GS == 16u) { return load_sdt(0u, g) * h0 + load_sdt(0u, g + 1u) * h1; }
    return h0 + h1;
  }
  let v0 = W[wb >> 2u];
  let v1 = W[(wb >> 2u) + 1u];
  return dot(quad(v0.x), xs[0]) + dot(quad(v0.y), xs[1]) + dot(quad(v0.z), xs[2]) + dot(quad(v0.w), xs[3])
    + dot(quad(v1.x), xs[4]) + dot(quad(v1.y), xs[5]) + dot(quad(v1.z), xs[6]) + dot(quad(v1.w), xs[7]);
}

// Σ code · x over one chunk, for any MODE (g: the group of the chunk's first value, used only when GS = 16).
fn chunk_dot_g(wb: u32, g: u32) -> f32 {
  if (MODE != 0u) { return chunk_dot_fp(wb, g); }
  return chunk_dot(wb);
}

fn chunk_dot(wb: u32) -> f32 {
  switch BITS {
    case 2u: {
      return 255.0 * (dot_w2(word(wb), xs[0], xs[1], xs[2], xs[3]) + dot_w2(word(wb + 1u), xs[4], xs[5], xs[6], xs[7]));
    }
    case 4u: {
      let v = W[wb >> 2u];
      return 255.0 * (dot_w4(v.x, xs[0], xs[1]) + dot_w4(v.y, xs[2], xs[3]) + dot_w4(v.z, xs[4], xs[5]) + dot_w4(v.w, xs[6], xs[7]));
    }
    case 8u: {
      let v0 = W[wb >> 2u];
      let v1 = W[(wb >> 2u) + 1u];
      return 255.0 * (dot(unpack4x8unorm(v0.x), xs[0]) + dot(unpack4x8unorm(v0.y), xs[1])
        + dot(unpack4x8unorm(v0.z), xs[2]) + dot(unpack4x8unorm(v0.w), xs[3])
        + dot(unpack4x8unorm(v1.x), xs[4]) + dot(unpack4x8unorm(v1.y), xs[5])
        + dot(unpack4x8unorm(v1.z), xs[6]) + dot(unpack4x8unorm(v1.w), xs[7]));
    }
    case 3u: {
      let w0 = word(wb); let w1 = word(wb + 1u); let w2 = word(wb + 2u);
      return dot(quad(w0), xs[0]) + dot(quad(w0 >> 12u), xs[1]) + dot(quad(funnel(w0, w1, 24u)), xs[2])
        + dot(quad(w1 >> 4u), xs[3]) + dot(quad(w1 >> 16u), xs[4]) + dot(quad(funnel(w1, w2, 28u)), xs[5])
        + dot(quad(w2 >> 8u), xs[6]) + dot(quad(w2 >> 20u), xs[7]);
    }
    case 5u: {
      let w0 = word(wb); let w1 = word(wb + 1u); let w2 = word(wb + 2u); let w3 = word(wb + 3u); let w4 = word(wb + 4u);
      return dot(quad(w0), xs[0]) + dot(quad(funnel(w0, w1, 20u)), xs[1]) + dot(quad(w1 >> 8u), xs[2])
        + dot(quad(funnel(w1, w2, 28u)), xs[3]) + dot(quad(funnel(w2, w3, 16u)), xs[4]) + dot(quad(w3 >> 4u), xs[5])
        + dot(quad(funnel(w3, w4, 24u)), xs[6]) + dot(quad(w4 >> 12u), xs[7]);
    }
    default: {
      let w0 = word(wb); let w1 = word(wb + 1u); let w2 = word(wb + 2u);
      let w3 = word(wb + 3u); let w4 = word(wb + 4u); let w5 = word(wb + 5u);
      return dot(quad(w0), xs[0]) + dot(quad(funnel(w0, w1, 24u)), xs[1]) + dot(quad(funnel(w1, w2, 16u)), xs[2])
        + dot(quad(w2 >> 8u), xs[3]) + dot(quad(w3), xs[4]) + dot(quad(funnel(w3, w4, 24u)), xs[5])
        + dot(quad(funnel(w4, w5, 16u)), xs[6]) + dot(quad(w5 >> 8u), xs[7]);
    }
  }
}
