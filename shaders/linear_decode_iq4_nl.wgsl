// iq4_nl unit decoder (32 weights; after linear_iq4_levels.wgsl). Our layout, split at upload from
// the file's 18-byte blocks exactly like q4_0:
//   quants: one vec4<u32> per unit = the block's 16 nibble bytes verbatim (byte j: element j in the
//           low nibble, element j+16 in the high nibble);
//   aux:    the block's f16 d, two per u32 (unit u of a row in half u % 2 of word u / 2), ⌈U/2⌉
//           words per row. Value = d · IQ4_LEVELS[nibble]. 18 bytes per 32 weights, as in the file.

fn unit_scale(row: u32, u: u32) -> f32 {
  return unpack2x16float(scales[row * ((part.units + 1u) / 2u) + u / 2u])[u % 2u];
}

fn load_unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
  return iq4_unit(quants[row * part.units + u], unit_scale(row, u));
}

/** Integer mat-vec: unit u of rows row0 and row1 · quantized activation unit ub (xq, xd). */
fn unit_dot2(row0: u32, row1: u32, u: u32, ub: u32) -> vec2<f32> {
  let s0 = iq4_dot(quants[row0 * part.units + u], ub);
  let s1 = iq4_dot(quants[row1 * part.units + u], ub);
  return vec2<f32>(f32(s0) * unit_scale(row0, u), f32(s1) * unit_scale(row1, u)) * xd[ub];
}

/** Prefill GEMM: elements 16h..16h+15 of unit u of `row` as int8 (their levels), four per word. */
fn unit_half_i8(row: u32, u: u32, h: u32) -> vec4<u32> {
  let n = nibble_half(quants[row * part.units + u], h);
  return vec4<u32>(iq4_i8x4(n.x), iq4_i8x4(n.y), iq4_i8x4(n.z), iq4_i8x4(n.w));
}

/** Prefill GEMM: (scale, offset) of elements 16h..16h+15: value = d · level. */
fn unit_half_scale(row: u32, u: u32, h: u32) -> vec2<f32> {
  return vec2<f32>(unit_scale(row, u), 0.0);
}

const UNIT_MIN_TERM: bool = false;
