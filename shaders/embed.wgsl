// out[t, :] = row ids[t] of an unquantised table stored raw as bf16, f16 or f32 (16-bit values two per word, element
// i in the low half when i is even). One thread per output element; one dispatch per row part of the table, each
// writing only the tokens whose id falls inside its rows.

override WDT: u32 = 0u; // 0 = bf16, 1 = f16, 2 = f32

struct Params {
  rows: u32,
  cols: u32,
  T: u32,
  row_start: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= P.T * P.cols) { return; }
  let t = i / P.cols;
  let c = i % P.cols;
  let id = ids[t];
  if (id < P.row_start || id - P.row_start >= P.rows) { return; }
  let e = (id - P.row_start) * P.cols + c;
  var v: f32;
  if (WDT == 2u) {
    v = bitcast<f32>(W[e]);
  } else {
    let w = W[e >> 1u];
    let odd = (e & 1u) != 0u;
    if (WDT == 0u) {
      v = bitcast<f32>(select(w << 16u, w & 0xffff0000u, odd));
    } else {
      let h = unpack2x16float(w);
      v = select(h.x, h.y, odd);
    }
  }
  out[i] = v;
}
