// RoPE fused with the KV-cache write, llama.cpp NORM pairing (adjacent pairs x[2i], x[2i+1]).
// For each token row t with (seq, pos) = rows[t]:
//   q heads of qkv[t] are rotated in place;
//   k heads are rotated and stored at k_cache[seq, pos];  v is stored at v_cache[seq, pos],
//   both as f16 pairs in the layout of shaders/attention.wgsl's header (kv_pair_index, pack2x16float).
// The angles come from a table computed on the CPU in f64 at load (θ = pos · base^(−2i/Dh) /
// rope_freqs[i]): exact, and free of f32 sin/cos range-reduction error at large positions.
//
// Bindings: 0 uniform { n_tokens: u32 }, 1 rows: [n_tokens] vec2<u32> (seq, pos),
//   2 table: [MAX_SEQ, HEAD_DIM/2] vec2<f32> (cos, sin), 3 qkv: [n_tokens, (H + 2·Hkv)·Dh] f32
//   (q | k | v, read_write), 4 k_cache, 5 v_cache: array<u32>, [batch, MAX_SEQ, Hkv·Dh/2] f16 pairs
//   (written).
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
@group(0) @binding(4) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<u32>;

// The KV-cache contract of shaders/attention.wgsl: the word of element pair (j, j + 1), j even.
fn kv_pair_index(seq: u32, pos: u32, j: u32) -> u32 {
  return ((seq * MAX_SEQ + pos) * N_KV_HEADS * HEAD_DIM + j) / 2u;
}

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
  // Q pair p covers elements 2p, 2p+1; its frequency index is p mod (Dh/2). Rotated in place.
  let q_pairs = N_HEADS * half;
  for (var p = lid; p < q_pairs; p += WG) {
    let cs = table[pos * half + p % half];
    let k = row + 2u * p;
    let x0 = qkv[k];
    let x1 = qkv[k + 1u];
    qkv[k] = x0 * cs.x - x1 * cs.y;
    qkv[k + 1u] = x0 * cs.y + x1 * cs.x;
  }
  // KV pair p: elements j = 2p, 2p+1 of the k and v rows; k rotated, both stored as f16 pairs.
  for (var p = lid; p < kv_dim / 2u; p += WG) {
    let cs = table[pos * half + p % half];
    let j = 2u * p;
    let k0 = qkv[row + q_dim + j];
    let k1 = qkv[row + q_dim + j + 1u];
    let at = kv_pair_index(seq, pos, j);
    k_cache[at] = pack2x16float(vec2<f32>(k0 * cs.x - k1 * cs.y, k0 * cs.y + k1 * cs.x));
    v_cache[at] = pack2x16float(vec2<f32>(qkv[row + q_dim + kv_dim + j], qkv[row + q_dim + kv_dim + j + 1u]));
  }
}
