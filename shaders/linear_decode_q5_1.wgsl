// q5_1 unit decoder (32 weights). Our layout, split at upload from the file's 24-byte blocks,
// R = the part's rows (part.w_rows), U = units per row, idx = row · U + u:
//   quants: one vec4<u32> per unit = the block's 16 nibble bytes verbatim (low 4 bits, as q5_0);
//   aux:    hi [R·U words]: the fifth bits regrouped as in q5_0 (element 4i + j at bit 8j + i,
//           16 + 4i + j at bit 8j + 4 + i); then dm [R·U words]: the block's f16 d (low half) and
//           m (high half). Value = q · d + m, q the 5-bit value. 24 bytes per 32 weights, as the file.

fn unit_dm(row: u32, u: u32) -> vec2<f32> {
  return unpack2x16float(scales[part.w_rows * part.units + row * part.units + u]);
}

fn load_unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
  let idx = row * part.units + u;
  let q = quants[idx];
  let hi = scales[idx];
  let dm = unit_dm(row, u);
  var w: array<vec4<f32>, 8>;
  for (var h = 0u; h < 2u; h++) {
    for (var i = 0u; i < 4u; i++) {
      let b = vec4<u32>(q5_bytes(q, hi, h, i)) >> vec4<u32>(0u, 8u, 16u, 24u);
      w[4u * h + i] = vec4<f32>(b & vec4<u32>(0xffu)) * dm.x + dm.y;
    }
  }
  return w;
}

/** Integer mat-vec: unit u of rows row0 and row1 · quantized activation unit ub (xq, xd). */
fn unit_dot2(row0: u32, row1: u32, u: u32, ub: u32) -> vec2<f32> {
  let sx = f32(xq_sum(ub));
  let a = unit_dm(row0, u);
  let b = unit_dm(row1, u);
  let i0 = row0 * part.units + u;
  let i1 = row1 * part.units + u;
  let s0 = q5_dot(quants[i0], scales[i0], ub);
  let s1 = q5_dot(quants[i1], scales[i1], ub);
  return vec2<f32>(a.x * f32(s0) + a.y * sx, b.x * f32(s1) + b.y * sx) * xd[ub];
}

/** Prefill GEMM: elements 16h..16h+15 of unit u of `row` as int8 (the 5-bit values 0..31), four per word. */
fn unit_half_i8(row: u32, u: u32, h: u32) -> vec4<u32> {
  let idx = row * part.units + u;
  return q5_half(quants[idx], scales[idx], h);
}

/** Prefill GEMM: (scale, offset) of elements 16h..16h+15: value = d · q + m. */
fn unit_half_scale(row: u32, u: u32, h: u32) -> vec2<f32> {
  return unit_dm(row, u);
}

const UNIT_MIN_TERM: bool = true;
