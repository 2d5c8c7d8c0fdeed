// Element-wise ops and layout shuffles: residual add, SwiGLU, KV-cache append.
// One invocation per element; the grid is 2-D (x + y·nx) because T·d elements overflow one dimension in prefill.
// Each entry point binds only the resources it uses (the wrapper passes bindings by number), so in-place ops
// never bind one buffer twice.

const WG: u32 = 256u;

struct Params {
  n: u32,      // elements to produce
  T: u32,
  H: u32,      // kv heads (kv_append, cache_append)
  D: u32,
  _p0: u32,    // was kv_append's first cache position: now S.p0
  maxCtx: u32, // kv_append: cache rows per kv head
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> o1: array<f32>;
@group(0) @binding(5) var<storage, read_write> o2: array<f32>;

fn index(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

// a ← a + b
@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
       @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= P.n) { return; }
  a[i] = a[i] + b[i];
}

// o1 = silu(b) ⊙ c   (b = gate, c = up)
@compute @workgroup_size(WG)
fn swiglu(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
          @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= P.n) { return; }
  let g = b[i];
  o1[i] = g * sigmoid(g) * c[i];
}

// b = k, c = v [T, Hkv, D] → o1 = kCache, o2 = vCache [Hkv, maxCtx, D] at rows S.p0 + t
@compute @workgroup_size(WG)
fn kv_append(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
             @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= P.n) { return; }
  let d = i % P.D;
  let th = i / P.D;
  let h = th % P.H;
  let t = th / P.H;
  let dst = (h * P.maxCtx + S.p0 + t) * P.D + d;
  o1[dst] = b[i];
  o2[dst] = c[i];
}

// b = v [T, Hkv, D] → o1 = vCache [Hkv, maxCtx, D] at rows S.p0 + t (K goes in through norm_rope)
@compute @workgroup_size(WG)
fn cache_append(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= P.n) { return; }
  let d = i % P.D;
  let th = i / P.D;
  let h = th % P.H;
  let t = th / P.H;
  o1[(h * P.maxCtx + S.p0 + t) * P.D + d] = b[i];
}
