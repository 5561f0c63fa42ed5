// out[t, :] = W[tokens[t], :] (dequantized to f32) for t < n_tokens, for one row-range part of W.
// Prepended by one linear_decode_<type>.wgsl (the same weight layouts the linear kernels read, so
// a tied embedding/head is one GpuWeight). Rows outside the part are left to the other parts'
// dispatches; a token id ≥ the weight's rows writes nothing.
//
// Bindings (group 0):
//   0 quants  storage read        array<vec4<u32>>
//   1 scales  storage read        array<u32>         the aux section (see the decoder)
//   2 tokens  storage read        array<u32>         token ids [maxTokens]
//   3 out     storage read_write  array<vec4<f32>>   [maxTokens, cols] at part.y_offset (floats)
//   4 params  uniform             vec4<u32>          .x = n_tokens
//   5 part    uniform             Meta
// Dispatch: (ceil(units / 64), n_tokens).

struct Meta {
  rows: u32,
  row_start: u32,
  units: u32,
  y_stride: u32,
  x_offset: u32,
  y_offset: u32,
  epilogue: u32,
  w_rows: u32,
}

@group(0) @binding(0) var<storage, read> quants: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: vec4<u32>;
@group(0) @binding(5) var<uniform> part: Meta;

@compute @workgroup_size(64)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>) {
  let u = gid.x;
  let t = gid.y;
  if (u >= part.units || t >= params.x) {
    return;
  }
  let tok = tokens[t];
  if (tok < part.row_start || tok - part.row_start >= part.rows) {
    return;
  }
  let w = load_unit(tok - part.row_start, u);
  let o = part.y_offset / 4u + (t * part.units + u) * 8u;
  for (var i = 0u; i < 8u; i++) {
    out[o + i] = w[i];
  }
}
