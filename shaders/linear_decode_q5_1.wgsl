// q5_1 unit decoder (32 weights). Our layout, split at upload from the file's 24-byte blocks,
// R = the part's rows (part.w_rows), U = units per row, idx = row · U + u:
//   quants: one vec4<u32> per unit = the block's 16 nibble bytes verbatim (low 4 bits, as q5_0);
//   aux:    hi [R·U words]: the fifth bits regrouped as in q5_0 (element 4i + j at bit 8j + i,
//           16 + 4i + j at bit 8j + 4 + i); then dm [R·U words]: the block's f16 d (low half) and
//           m (high half). Value = q · d + m, q the 5-bit value. 24 bytes per 32 weights, as the file.

fn unit_dm(row: u32, u: u32) -> vec2<f32> {
  return unpack2x16float(scales[part.w_rows * part.units + row * part.units + u]);
}

/** The 5-bit values of elements 16h + 4i .. 16h + 4i + 3 as bytes (0..31). */
fn q5_bytes(q: vec4<u32>, hi: u32, h: u32, i: u32) -> u32 {
  return ((q[i] >> (4u * h)) & 0x0f0f0f0fu) | (((hi >> (4u * h + i)) & 0x01010101u) << 4u);
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

/** Σ of the quantized activation unit ub's 32 int8 values (the m term: m · Σ x). */
fn xq_sum(ub: u32) -> i32 {
  var s = 0i;
  for (var k = 0u; k < 8u; k++) {
    s += dot4I8Packed(0x01010101u, xq[8u * ub + k]);
  }
  return s;
}

/** Σ q · x over unit u of `row` (integers; the 5-bit values 0..31 are already int8 bytes). */
fn q5_1_dot(row: u32, u: u32, ub: u32) -> i32 {
  let idx = row * part.units + u;
  let q = quants[idx];
  let hi = scales[idx];
  var s = 0i;
  for (var h = 0u; h < 2u; h++) {
    for (var i = 0u; i < 4u; i++) {
      s += dot4I8Packed(q5_bytes(q, hi, h, i), xq[8u * ub + 4u * h + i]);
    }
  }
  return s;
}

/** Integer mat-vec: unit u of rows row0 and row1 · quantized activation unit ub (xq, xd). */
fn unit_dot2(row0: u32, row1: u32, u: u32, ub: u32) -> vec2<f32> {
  let sx = f32(xq_sum(ub));
  let a = unit_dm(row0, u);
  let b = unit_dm(row1, u);
  return vec2<f32>(a.x * f32(q5_1_dot(row0, u, ub)) + a.y * sx, b.x * f32(q5_1_dot(row1, u, ub)) + b.y * sx) * xd[ub];
}
