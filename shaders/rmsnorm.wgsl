// RMSNorm over rows: y[r, i] = x[r, i] / sqrt(mean_i(x[r, :]²) + EPS) · w[i], for r < n_rows.
// One workgroup per row; the sum of squares is accumulated in f32 (never f16) and reduced through
// a shared-memory tree. Used for attn_norm / ffn_norm on all token rows and output_norm on the
// gathered last row of each sequence.
//
// Bindings: 0 uniform { n_rows: u32 } (byte 0), 1 x: [n_rows, DIM] f32, 2 w: [DIM] f32,
//           3 y: [n_rows, DIM] f32 (written). Overrides: DIM, EPS. Dispatch: (n_rows, 1, 1).

override DIM: u32;
override EPS: f32;
const WG: u32 = 256u;

struct Params {
  n_rows: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg.x;
  if (row >= params.n_rows) {
    return;
  }
  let base = row * DIM;
  var ss = 0.0;
  for (var i = lid; i < DIM; i += WG) {
    let v = x[base + i];
    ss += v * v;
  }
  partial[lid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      partial[lid] += partial[lid + s];
    }
    workgroupBarrier();
  }
  let scale = 1.0 / sqrt(partial[0] / f32(DIM) + EPS);
  for (var i = lid; i < DIM; i += WG) {
    y[base + i] = x[base + i] * scale * w[i];
  }
}
