// iq4_xs unit decoder (32 weights; a 256-weight file block is 8 units; after
// linear_iq4_levels.wgsl). Our layout, split at upload from the file's 136-byte blocks:
//   quants: one vec4<u32> per unit = the sub-block's 16 nibble bytes verbatim (as iq4_nl);
//   aux:    the block's first 8 bytes verbatim, two u32 per block (block = idx / 8, idx = row · U
//           + u; U is a multiple of 8): word 0 = f16 d | scales_h << 16, word 1 = scales_l.
//           Sub-block ib = u % 8 has ls = (scales_l >> 4ib) & 15 | ((scales_h >> 2ib) & 3) << 4.
//   Value = d · (ls − 32) · IQ4_LEVELS[nibble]. 17 bytes per 32 weights, as in the file.

fn unit_scale(row: u32, u: u32) -> f32 {
  let blk = (row * part.units + u) / 8u;
  let w0 = scales[2u * blk];
  let w1 = scales[2u * blk + 1u];
  let ib = u % 8u;
  let ls = ((w1 >> (4u * ib)) & 0xfu) | (((w0 >> (16u + 2u * ib)) & 3u) << 4u);
  return unpack2x16float(w0).x * f32(i32(ls) - 32);
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

/** Prefill GEMM: (scale, offset) of elements 16h..16h+15: value = d · (ls − 32) · level. */
fn unit_half_scale(row: u32, u: u32, h: u32) -> vec2<f32> {
  return vec2<f32>(unit_scale(row, u), 0.0);
}

const UNIT_MIN_TERM: bool = false;
