// RoPE fused with the KV-cache write, llama.cpp NORM pairing (adjacent pairs x[2i], x[2i+1]).
// For each token row t with (seq, pos) = rows[t]:
//   q heads of qkv[t] are rotated in place;
//   k heads are rotated and stored at k_cache[seq, pos];  v is copied to v_cache[seq, pos].
// The angles come from a table computed on the CPU in f64 at load (θ = pos · base^(−2i/Dh) /
// rope_freqs[i]): exact, and free of f32 sin/cos range-reduction error at large positions.
//
// Bindings: 0 uniform { n_tokens: u32 }, 1 rows: [n_tokens] vec2<u32> (seq, pos),
//   2 table: [MAX_SEQ, HEAD_DIM/2] vec2<f32> (cos, sin), 3 qkv: [n_tokens, (H + 2·Hkv)·Dh] f32
//   (q | k | v, read_write), 4 k_cache, 5 v_cache: [batch, MAX_SEQ, Hkv·Dh] f32 (written).
// Overrides: N_HEADS, N_KV_HEADS, HEAD_DIM, MAX_SEQ. Dispatch: (n_tokens, 1, 1).

override N_HEADS: u32;
override N_KV_HEADS: u32;
override HEAD_DIM: u32;
override MAX_SEQ: u32;
const WG: u32 = 64u;

struct Params {
  n_tokens: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> rows: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wg.x;
  if (t >= params.n_tokens) {
    return;
  }
  let seq = rows[t].x;
  let pos = rows[t].y;
  let half = HEAD_DIM / 2u;
  let q_dim = N_HEADS * HEAD_DIM;
  let kv_dim = N_KV_HEADS * HEAD_DIM;
  let row = t * (q_dim + 2u * kv_dim);
  let slot = (seq * MAX_SEQ + pos) * kv_dim;
  // Pair p covers elements 2p, 2p+1 of q|k; its frequency index is p mod (Dh/2).
  let n_pairs = (N_HEADS + N_KV_HEADS) * half;
  for (var p = lid; p < n_pairs; p += WG) {
    let cs = table[pos * half + p % half];
    let k = row + 2u * p;
    let x0 = qkv[k];
    let x1 = qkv[k + 1u];
    let r0 = x0 * cs.x - x1 * cs.y;
    let r1 = x0 * cs.y + x1 * cs.x;
    if (2u * p < q_dim) {
      qkv[k] = r0;
      qkv[k + 1u] = r1;
    } else {
      let j = 2u * p - q_dim;
      k_cache[slot + j] = r0;
      k_cache[slot + j + 1u] = r1;
    }
  }
  for (var j = lid; j < kv_dim; j += WG) {
    v_cache[slot + j] = qkv[row + q_dim + kv_dim + j];
  }
}
