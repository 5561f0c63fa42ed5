// q4_K unit decoder (32 weights; a 256-weight file block is 8 units, one 32-element sub-block
// each). Our layout, split at upload (src/engine/gpu/weights.ts repackQ45K), R = the part's rows
// (part.w_rows), U = units per row, B = U / 8 blocks per row, idx = row · U + u:
//   quants: one vec4<u32> per unit: byte j holds element j's nibble (low) and element j+16's
//           (high), like q4_0 (the file's 64-element interleave undone);
//   aux:    sm [R·B·3 words]: the block's 12 bytes of packed 6-bit scales and mins verbatim
//           (ggml's get_scale_min_k4 reads them); then dm [R·B words]: f16 d (low), f16 dmin (high).
//   Value = d·sc·q − dmin·m. 18 bytes per 32 weights, as in the file.

/** Scale and min of unit u of `row` (sm starts the aux section). */
fn unit_k_scale(row: u32, u: u32) -> KScale {
  return k_scale(0u, row, u);
}

fn load_unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
  let q = quants[row * part.units + u];
  let s = unit_k_scale(row, u);
  var w: array<vec4<f32>, 8>;
  for (var i = 0u; i < 4u; i++) {
    let b = vec4<u32>(q[i]) >> vec4<u32>(0u, 8u, 16u, 24u);
    w[i] = vec4<f32>(b & vec4<u32>(0xfu)) * s.d - s.m;
    w[i + 4u] = vec4<f32>((b >> vec4<u32>(4u)) & vec4<u32>(0xfu)) * s.d - s.m;
  }
  return w;
}

/** Integer mat-vec: unit u of rows row0 and row1 · quantized activation unit ub (xq, xd). */
fn unit_dot2(row0: u32, row1: u32, u: u32, ub: u32) -> vec2<f32> {
  let xs = f32(xq_sum(ub));
  let s0 = unit_k_scale(row0, u);
  let s1 = unit_k_scale(row1, u);
  let a = s0.d * f32(nibble_dot(quants[row0 * part.units + u], ub)) - s0.m * xs;
  let b = s1.d * f32(nibble_dot(quants[row1 * part.units + u], ub)) - s1.m * xs;
  return vec2<f32>(a, b) * xd[ub];
}

/** Prefill GEMM: elements 16h..16h+15 of unit u of `row` as int8 (the nibbles 0..15), four per word. */
fn unit_half_i8(row: u32, u: u32, h: u32) -> vec4<u32> {
  return nibble_half(quants[row * part.units + u], h);
}

/** Prefill GEMM: (scale, offset) of elements 16h..16h+15: value = d·sc · q − dmin·m. */
fn unit_half_scale(row: u32, u: u32, h: u32) -> vec2<f32> {
  let s = unit_k_scale(row, u);
  return vec2<f32>(s.d, -s.m);
}

const UNIT_MIN_TERM: bool = true;
