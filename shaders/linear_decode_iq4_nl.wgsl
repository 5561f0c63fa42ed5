// iq4_nl unit decoder (32 weights; after linear_iq4_levels.wgsl). Our layout, split at upload from
// the file's 18-byte blocks exactly like q4_0:
//   quants: one vec4<u32> per unit = the block's 16 nibble bytes verbatim (byte j: element j in the
//           low nibble, element j+16 in the high nibble);
//   aux:    the block's f16 d, two per u32 (unit u of a row in half u % 2 of word u / 2), ⌈U/2⌉
//           words per row. Value = d · IQ4_LEVELS[nibble]. 18 bytes per 32 weights, as in the file.

fn unit_scale(row: u32, u: u32) -> f32 {
  return unpack2x16float(scales[row * ((part.units + 1u) / 2u) + u / 2u])[u % 2u];
}
