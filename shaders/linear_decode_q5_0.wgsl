// q5_0 unit decoder (32 weights). Our layout, split at upload from the file's 22-byte blocks,
// R = the part's rows (part.w_rows), U = units per row, idx = row · U + u:
//   quants: one vec4<u32> per unit = the block's 16 nibble bytes verbatim (low 4 bits; byte j holds
//           element j in its low nibble and element j+16 in its high nibble, as q4_0);
//   aux:    hi [R·U words]: the fifth bits, regrouped: element 4i + j at bit 8j + i, element
//           16 + 4i + j at bit 8j + 4 + i (weights.ts regroupQ5High); then d [R·⌈U/2⌉ words]:
//           the block's f16 d, two per u32 (unit u of a row in half u % 2 of word u / 2).
//   Value = (q − 16) · d, q the 5-bit value. 22 bytes per 32 weights, as in the file.

fn unit_scale(row: u32, u: u32) -> f32 {
  let base = part.w_rows * part.units;
  return unpack2x16float(scales[base + row * ((part.units + 1u) / 2u) + u / 2u])[u % 2u];
}

fn load_unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
  let idx = row * part.units + u;
  let q = quants[idx];
  let hi = scales[idx];
  let d = unit_scale(row, u);
  var w: array<vec4<f32>, 8>;
  for (var h = 0u; h < 2u; h++) {
    for (var i = 0u; i < 4u; i++) {
      let b = vec4<u32>(q5_bytes(q, hi, h, i)) >> vec4<u32>(0u, 8u, 16u, 24u);
      w[4u * h + i] = (vec4<f32>(b & vec4<u32>(0xffu)) - 16.0) * d;
    }
  }
  return w;
}

/** 5-bit bytes q (0..31) → the int8 bytes q − 16: flip bit 4, then sign-extend it into bits 5..7. */
fn q5_to_i8(v: u32) -> u32 {
  let s = v ^ 0x10101010u;
  return s | ((s & 0x10101010u) * 0xeu);
}

/** Σ (q − 16) · x over unit u of `row` (integers). */
fn q5_0_dot(row: u32, u: u32, ub: u32) -> i32 {
  let idx = row * part.units + u;
  let q = quants[idx];
  let hi = scales[idx];
  var s = 0i;
  for (var h = 0u; h < 2u; h++) {
    for (var i = 0u; i < 4u; i++) {
      s += dot4I8Packed(q5_to_i8(q5_bytes(q, hi, h, i)), xq[8u * ub + 4u * h + i]);
    }
  }
  return s;
}

/** Integer mat-vec: unit u of rows row0 and row1 · quantized activation unit ub (xq, xd). */
fn unit_dot2(row0: u32, row1: u32, u: u32, ub: u32) -> vec2<f32> {
  return vec2<f32>(f32(q5_0_dot(row0, u, ub)) * unit_scale(row0, u), f32(q5_0_dot(row1, u, ub)) * unit_scale(row1, u)) * xd[ub];
}

/** Prefill GEMM: elements 16h..16h+15 of unit u of `row` as int8 (q − 16), four per word. */
fn unit_half_i8(row: u32, u: u32, h: u32) -> vec4<u32> {
  let idx = row * part.units + u;
  let q = q5_half(quants[idx], scales[idx], h);
  return vec4<u32>(q5_to_i8(q.x), q5_to_i8(q.y), q5_to_i8(q.z), q5_to_i8(q.w));
}

/** Prefill GEMM: (scale, offset) of elements 16h..16h+15: value = d · (q − 16). */
fn unit_half_scale(row: u32, u: u32, h: u32) -> vec2<f32> {
  return vec2<f32>(unit_scale(row, u), 0.0);
}

const UNIT_MIN_TERM: bool = false;
