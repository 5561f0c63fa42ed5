// q5_K unit decoder (32 weights; a 256-weight file block is 8 units, one 32-element sub-block
// each). Our layout, split at upload (src/engine/gpu/weights.ts repackQ45K), R = the part's rows
// (part.w_rows), U = units per row, B = U / 8 blocks per row, idx = row · U + u:
//   quants: one vec4<u32> per unit: byte j holds element j's low 4 bits (low nibble) and element
//           j+16's (high nibble), like q4_0;
//   aux:    hi [R·U words]: word idx has the 5th bit of element 16h + 4i + j at bit 8j + 4h + i;
//           then sm [R·B·3 words]: the block's 12 bytes of packed 6-bit scales and mins verbatim
//           (ggml's get_scale_min_k4); then dm [R·B words]: f16 d (low), f16 dmin (high).
//   Value = d·sc·q − dmin·m, q the 5-bit value. 22 bytes per 32 weights, as in the file.

/** Scale and min of unit u of `row` (sm follows the hi array). */
fn unit_k_scale(row: u32, u: u32) -> KScale {
  return k_scale(part.w_rows * part.units, row, u);
}

fn load_unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
  let idx = row * part.units + u;
  let lo = quants[idx];
  let hi = scales[idx];
  let s = unit_k_scale(row, u);
  var w: array<vec4<f32>, 8>;
  for (var h = 0u; h < 2u; h++) {
    for (var i = 0u; i < 4u; i++) {
      let b = vec4<u32>(q5_bytes(lo, hi, h, i)) >> vec4<u32>(0u, 8u, 16u, 24u);
      w[4u * h + i] = vec4<f32>(b & vec4<u32>(0xffu)) * s.d - s.m;
    }
  }
  return w;
}

/** Integer mat-vec: unit u of rows row0 and row1 · quantized activation unit ub (xq, xd). */
fn unit_dot2(row0: u32, row1: u32, u: u32, ub: u32) -> vec2<f32> {
  let xs = f32(xq_sum(ub));
  let s0 = unit_k_scale(row0, u);
  let s1 = unit_k_scale(row1, u);
  let i0 = row0 * part.units + u;
  let i1 = row1 * part.units + u;
  let a = s0.d * f32(q5_dot(quants[i0], scales[i0], ub)) - s0.m * xs;
  let b = s1.d * f32(q5_dot(quants[i1], scales[i1], ub)) - s1.m * xs;
  return vec2<f32>(a, b) * xd[ub];
}

/** Prefill GEMM: elements 16h..16h+15 of unit u of `row` as int8 (the 5-bit values 0..31), four per word. */
fn unit_half_i8(row: u32, u: u32, h: u32) -> vec4<u32> {
  let idx = row * part.units + u;
  return q5_half(quants[idx], scales[idx], h);
}

/** Prefill GEMM: (scale, offset) of elements 16h..16h+15: value = d·sc · q − dmin·m. */
fn unit_half_scale(row: u32, u: u32, h: u32) -> vec2<f32> {
  let s = unit_k_scale(row, u);
  return vec2<f32>(s.d, -s.m);
}

const UNIT_MIN_TERM: bool = true;
