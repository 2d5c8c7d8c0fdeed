// Shared by every MLX affine kernel (qmatvec, qmatmul, qembed): the wrapper prepends this text.
// Spec §5.2-5.3: w = scale · q + bias per group of GS values along a row; each row is an LSB-first bit stream, so
// 32 values are exactly BITS words and every group starts on a word boundary.

override BITS: u32 = 4u;
override GS: u32 = 64u;
// Storage type of scales and biases: 0 = bf16, 1 = f16, 2 = f32 (16-bit types hold two values per word,
// element i in the low half when i is even).
override SDT: u32 = 0u;

@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> S: array<u32>;
@group(0) @binding(3) var<storage, read> B: array<u32>;

fn qmask() -> u32 { return (1u << BITS) - 1u; }

// Element i of a scale/bias array in its storage dtype. bf16 → f32 is a plain shift into the high half, and
// unpack2x16float is core WGSL, so no f16 extension is needed.
fn load_sdt(buf: u32, i: u32) -> f32 {
  var w: u32;
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

/// (scale, bias) of group index i (row-major over [rows, cols / GS]).
fn scale_bias(i: u32) -> vec2<f32> {
  return vec2<f32>(load_sdt(0u, i), load_sdt(1u, i));
}

// 64-bit funnel shift: bits [off, off + 32) of the pair hi:lo, for off < 32. Shifting hi in two steps keeps every
// shift amount below 32 (off = 0 then contributes nothing from hi).
fn funnel(lo: u32, hi: u32, off: u32) -> u32 {
  return (lo >> off) | ((hi << 1u) << (31u - off));
}

// Four consecutive BITS-bit values starting at bit 0 of u (bits above 4·BITS are ignored).
fn quad(u: u32) -> vec4<f32> {
  let sh = vec4<u32>(0u, BITS, 2u * BITS, 3u * BITS);
  return vec4<f32>((vec4<u32>(u) >> sh) & vec4<u32>(qmask()));
}

// The 32 codes of one chunk (words W[wb .. wb + BITS)) as 8 quads, decoded with constant shifts per bit width: the
// quad starting at stream bit p = 4·k·BITS lives in word p / 32 at offset p % 32, or straddles two words.
fn chunk_codes(wb: u32) -> array<vec4<f32>, 8> {
  var q: array<vec4<f32>, 8>;
  switch BITS {
    case 2u: {
      let w0 = W[wb]; let w1 = W[wb + 1u];
      q[0] = quad(w0); q[1] = quad(w0 >> 8u); q[2] = quad(w0 >> 16u); q[3] = quad(w0 >> 24u);
      q[4] = quad(w1); q[5] = quad(w1 >> 8u); q[6] = quad(w1 >> 16u); q[7] = quad(w1 >> 24u);
    }
    case 3u: {
      let w0 = W[wb]; let w1 = W[wb + 1u]; let w2 = W[wb + 2u];
      q[0] = quad(w0); q[1] = quad(w0 >> 12u); q[2] = quad(funnel(w0, w1, 24u)); q[3] = quad(w1 >> 4u);
      q[4] = quad(w1 >> 16u); q[5] = quad(funnel(w1, w2, 28u)); q[6] = quad(w2 >> 8u); q[7] = quad(w2 >> 20u);
    }
    case 4u: {
      let w0 = W[wb]; let w1 = W[wb + 1u]; let w2 = W[wb + 2u]; let w3 = W[wb + 3u];
      q[0] = quad(w0); q[1] = quad(w0 >> 16u); q[2] = quad(w1); q[3] = quad(w1 >> 16u);
      q[4] = quad(w2); q[5] = quad(w2 >> 16u); q[6] = quad(w3); q[7] = quad(w3 >> 16u);
    }
    case 5u: {
      let w0 = W[wb]; let w1 = W[wb + 1u]; let w2 = W[wb + 2u]; let w3 = W[wb + 3u]; let w4 = W[wb + 4u];
      q[0] = quad(w0); q[1] = quad(funnel(w0, w1, 20u)); q[2] = quad(w1 >> 8u); q[3] = quad(funnel(w1, w2, 28u));
      q[4] = quad(funnel(w2, w3, 16u)); q[5] = quad(w3 >> 4u); q[6] = quad(funnel(w3, w4, 24u)); q[7] = quad(w4 >> 12u);
    }
    case 6u: {
      let w0 = W[wb]; let w1 = W[wb + 1u]; let w2 = W[wb + 2u];
      let w3 = W[wb + 3u]; let w4 = W[wb + 4u]; let w5 = W[wb + 5u];
      q[0] = quad(w0); q[1] = quad(funnel(w0, w1, 24u)); q[2] = quad(funnel(w1, w2, 16u)); q[3] = quad(w2 >> 8u);
      q[4] = quad(w3); q[5] = quad(funnel(w3, w4, 24u)); q[6] = quad(funnel(w4, w5, 16u)); q[7] = quad(w5 >> 8u);
    }
    default: {
      for (var k = 0u; k < 8u; k++) { q[k] = quad(W[wb + k]); }
    }
  }
  return q;
}
