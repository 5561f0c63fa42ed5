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
