// Causal attention with GQA over the per-sequence KV cache. Each token row t has (seq, pos) =
// rows[t] and attends to positions 0..pos of its own sequence (so a batch may mix sequences and
// prefill chunks). Query head h reads KV head h / (N_HEADS / N_KV_HEADS). Scores are scaled by
// 1/sqrt(HEAD_DIM); softmax is online (running max m, running sum l) in f32.
//
// Keys are processed in tiles of WG positions: each thread scores one key of the tile, then every
// thread accumulates its output dims (lid, lid + WG, …) over the tile's probabilities, which are
// shared through workgroup memory.
//
// Entry points (bindings of each):
//   prefill       grid (H, n_tokens): one workgroup per (head, token) over the whole range.
//     0 uniform { n_tokens, n_splits, split_len }, 1 rows: [n_tokens] vec2<u32> (seq, pos),
//     2 qkv: [n_tokens, (H + 2·Hkv)·Dh] f32 (q is the first H·Dh), 3 k_cache, 4 v_cache:
//     [batch, MAX_SEQ, Hkv·Dh] f32, 5 out: [n_tokens, H·Dh] f32 (written).
//   decode_split  grid (n_splits, H, n_tokens): flash-decoding; split s covers positions
//     [s·split_len, min((s+1)·split_len, pos+1)). Bindings 0–4 as prefill, 5 partial:
//     [n_tokens, H, n_splits, HEAD_DIM + 2] f32 = unnormalized o, then m, l (written).
//   decode_reduce grid (H, n_tokens): merges the splits: out = Σ e^(m_s−M)·o_s / Σ e^(m_s−M)·l_s.
//     0 uniform, 1 partial (read), 2 out (written).
// Overrides: N_HEADS, N_KV_HEADS, HEAD_DIM (≤ 256), MAX_SEQ.

override N_HEADS: u32;
override N_KV_HEADS: u32;
override HEAD_DIM: u32;
override MAX_SEQ: u32;
const WG: u32 = 64u;
const MAX_DIMS_PER_THREAD: u32 = 4u; // HEAD_DIM ≤ 4 · WG
const NEG_BIG: f32 = -1.0e30; // finite "minus infinity": exp(NEG_BIG − m) is 0, never NaN

struct Params {
  n_tokens: u32,
  n_splits: u32,
  split_len: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> rows: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read> v_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> q_sh: array<f32, 256>;
var<workgroup> p_sh: array<f32, WG>;
var<workgroup> red: array<f32, WG>;
var<private> acc: array<f32, MAX_DIMS_PER_THREAD>;

fn reduce_max(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red[lid] = max(red[lid], red[lid + s]);
    }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn reduce_sum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red[lid] += red[lid + s];
    }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

// Online softmax over positions [start, end) of token t, head h. Leaves the unnormalized output in
// `acc` and returns (m, l). start, end are uniform across the workgroup.
fn attend(t: u32, h: u32, start: u32, end: u32, lid: u32) -> vec2<f32> {
  let q_dim = N_HEADS * HEAD_DIM;
  let kv_dim = N_KV_HEADS * HEAD_DIM;
  let kvh = h / (N_HEADS / N_KV_HEADS);
  let seq_base = rows[t].x * MAX_SEQ;
  let scale = 1.0 / sqrt(f32(HEAD_DIM));
  let q_off = t * (q_dim + 2u * kv_dim) + h * HEAD_DIM;
  for (var d = lid; d < HEAD_DIM; d += WG) {
    q_sh[d] = qkv[q_off + d];
  }
  for (var j = 0u; j < MAX_DIMS_PER_THREAD; j++) {
    acc[j] = 0.0;
  }
  workgroupBarrier();
  var m = NEG_BIG;
  var l = 0.0;
  for (var base = start; base < end; base += WG) {
    let p = base + lid;
    var s = NEG_BIG;
    if (p < end) {
      let k_off = (seq_base + p) * kv_dim + kvh * HEAD_DIM;
      var dot = 0.0;
      for (var d = 0u; d < HEAD_DIM; d++) {
        dot += q_sh[d] * k_cache[k_off + d];
      }
      s = dot * scale;
    }
    let m_new = max(m, reduce_max(lid, s));
    var e = 0.0;
    if (p < end) {
      e = exp(s - m_new);
    }
    p_sh[lid] = e;
    let corr = exp(m - m_new);
    l = l * corr + reduce_sum(lid, e); // reduce_sum's barriers also publish p_sh
    let n = min(WG, end - base);
    for (var j = 0u; j < MAX_DIMS_PER_THREAD; j++) {
      let d = lid + j * WG;
      if (d < HEAD_DIM) {
        var a = acc[j] * corr;
        for (var k = 0u; k < n; k++) {
          a += p_sh[k] * v_cache[(seq_base + base + k) * kv_dim + kvh * HEAD_DIM + d];
        }
        acc[j] = a;
      }
    }
    m = m_new;
    workgroupBarrier(); // p_sh is rewritten by the next tile
  }
  return vec2<f32>(m, l);
}

@compute @workgroup_size(WG)
fn prefill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wg.x;
  let t = wg.y;
  if (t >= params.n_tokens) {
    return;
  }
  let ml = attend(t, h, 0u, rows[t].y + 1u, lid);
  let o = (t * N_HEADS + h) * HEAD_DIM;
  for (var j = 0u; j < MAX_DIMS_PER_THREAD; j++) {
    let d = lid + j * WG;
    if (d < HEAD_DIM) {
      out[o + d] = acc[j] / ml.y;
    }
  }
}

@compute @workgroup_size(WG)
fn decode_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let sp = wg.x;
  let h = wg.y;
  let t = wg.z;
  if (t >= params.n_tokens || sp >= params.n_splits) {
    return;
  }
  let len = rows[t].y + 1u;
  let start = min(sp * params.split_len, len);
  let end = min(start + params.split_len, len);
  let ml = attend(t, h, start, end, lid);
  let o = ((t * N_HEADS + h) * params.n_splits + sp) * (HEAD_DIM + 2u);
  for (var j = 0u; j < MAX_DIMS_PER_THREAD; j++) {
    let d = lid + j * WG;
    if (d < HEAD_DIM) {
      out[o + d] = acc[j];
    }
  }
  if (lid == 0u) {
    out[o + HEAD_DIM] = ml.x;
    out[o + HEAD_DIM + 1u] = ml.y;
  }
}

@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> merged: array<f32>;

@compute @workgroup_size(WG)
fn decode_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wg.x;
  let t = wg.y;
  if (t >= params.n_tokens) {
    return;
  }
  let n = params.n_splits;
  let stride = HEAD_DIM + 2u;
  let first = (t * N_HEADS + h) * n * stride;
  var big_m = NEG_BIG;
  for (var sp = 0u; sp < n; sp++) {
    big_m = max(big_m, partial[first + sp * stride + HEAD_DIM]);
  }
  var big_l = 0.0;
  for (var sp = 0u; sp < n; sp++) {
    let o = first + sp * stride;
    big_l += exp(partial[o + HEAD_DIM] - big_m) * partial[o + HEAD_DIM + 1u];
  }
  for (var d = lid; d < HEAD_DIM; d += WG) {
    var a = 0.0;
    for (var sp = 0u; sp < n; sp++) {
      let o = first + sp * stride;
      a += exp(partial[o + HEAD_DIM] - big_m) * partial[o + d];
    }
    merged[(t * N_HEADS + h) * HEAD_DIM + d] = a / big_l;
  }
}
