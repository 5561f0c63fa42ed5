// Small row operations around the transformer blocks.
//
// gather: y[s, :] = x[seqs[s].x, :] for s < n_seqs: the last row of each sequence, so the final
// norm, the LM head and the sampler only see one row per sequence (not every prefill token).
//
// Bindings: 0 uniform { n_seqs: u32 }, 1 seqs: [n_seqs] vec4<u32> (last_row, len, u bits, 0),
//   2 x: [n_tokens, DIM] f32, 3 y: [n_seqs, DIM] f32 (written). Override: DIM.
// Dispatch: (n_seqs, 1, 1).

override DIM: u32;
const WG: u32 = 64u;

struct Params {
  n_seqs: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> seqs: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wg.x;
  if (s >= params.n_seqs) {
    return;
  }
  let src = seqs[s].x * DIM;
  for (var i = lid; i < DIM; i += WG) {
    y[s * DIM + i] = x[src + i];
  }
}
