// q4_1 unit decoder (32 weights). Our layout, split at upload from the file's 20-byte blocks:
//   quants: one vec4<u32> per unit = the block's 16 nibble bytes verbatim; byte j (= word j/4,
//           bits 8·(j%4)) holds element j in its low nibble and element j+16 in its high nibble;
//   aux:    the block's f16 d (low half) and m (high half), one u32 per unit (row · U + u).
//   Value = nibble · d + m. 20 bytes per 32 weights, as in the file.

fn unit_dm(row: u32, u: u32) -> vec2<f32> {
  return unpack2x16float(scales[row * part.units + u]);
}

fn load_unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
  let q = quants[row * part.units + u];
  let dm = unit_dm(row, u);
  var w: array<vec4<f32>, 8>;
  for (var i = 0u; i < 4u; i++) {
    let b = vec4<u32>(q[i]) >> vec4<u32>(0u, 8u, 16u, 24u);
    w[i] = vec4<f32>(b & vec4<u32>(0xfu)) * dm.x + dm.y;
    w[i + 4u] = vec4<f32>((b >> vec4<u32>(4u)) & vec4<u32>(0xfu)) * dm.x + dm.y;
  }
  return w;
}

/** Integer mat-vec: unit u of rows row0 and row1 · quantized activation unit ub (xq, xd). */
fn unit_dot2(row0: u32, row1: u32, u: u32, ub: u32) -> vec2<f32> {
  let sx = f32(xq_sum(ub));
  let a = unit_dm(row0, u);
  let b = unit_dm(row1, u);
  let q0 = quants[row0 * part.units + u];
  let q1 = quants[row1 * part.units + u];
  return vec2<f32>(a.x * f32(nibble_dot(q0, ub)) + a.y * sx, b.x * f32(nibble_dot(q1, ub)) + b.y * sx) * xd[ub];
}

/** Prefill GEMM: elements 16h..16h+15 of unit u of `row` as int8 (the nibbles 0..15), four per word. */
fn unit_half_i8(row: u32, u: u32, h: u32) -> vec4<u32> {
  return nibble_half(quants[row * part.units + u], h);
}

/** Prefill GEMM: (scale, offset) of elements 16h..16h+15: value = d · q + m. */
fn unit_half_scale(row: u32, u: u32, h: u32) -> vec2<f32> {
  return unit_dm(row, u);
}

const UNIT_MIN_TERM: bool = true;
