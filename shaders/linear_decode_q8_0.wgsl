// q8_0 unit decoder (32 weights). Our layout, split at upload from the file's 34-byte blocks:
//   quants: two vec4<u32> per unit = the block's 32 int8 bytes verbatim (word j = elements 4j..4j+3,
//           little-endian);
//   aux:    the block's f16 d, two per u32 (unit u of a row in half u % 2 of word u / 2), ⌈U/2⌉
//           words per row. Value = q · d. 34 bytes per 32 weights, as in the file.

fn unit_scale(row: u32, u: u32) -> f32 {
  return unpack2x16float(scales[row * ((part.units + 1u) / 2u) + u / 2u])[u % 2u];
}

fn load_unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
  let idx = row * part.units + u;
  let d = unit_scale(row, u);
  var w: array<vec4<f32>, 8>;
  for (var h = 0u; h < 2u; h++) {
    let q = quants[2u * idx + h];
    for (var i = 0u; i < 4u; i++) {
      // Sign-extend each byte: move it to the top, then arithmetic-shift back down.
      let s = bitcast<vec4<i32>>(vec4<u32>(q[i]) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
      w[4u * h + i] = vec4<f32>(s) * d;
    }
  }
  return w;
}

/** Integer mat-vec: unit u of rows row0 and row1 · quantized activation unit ub (xq, xd). */
fn unit_dot2(row0: u32, row1: u32, u: u32, ub: u32) -> vec2<f32> {
  let i0 = 2u * (row0 * part.units + u);
  let i1 = 2u * (row1 * part.units + u);
  var s0 = 0i;
  var s1 = 0i;
  for (var h = 0u; h < 2u; h++) {
    let w0 = quants[i0 + h];
    let w1 = quants[i1 + h];
    for (var i = 0u; i < 4u; i++) {
      let xv = xq[8u * ub + 4u * h + i];
      s0 += dot4I8Packed(w0[i], xv);
      s1 += dot4I8Packed(w1[i], xv);
    }
  }
  return vec2<f32>(f32(s0) * unit_scale(row0, u), f32(s1) * unit_scale(row1, u)) * xd[ub];
}

/** Prefill GEMM: elements 16h..16h+15 of unit u of `row` as int8, four per word (the file's bytes). */
fn unit_half_i8(row: u32, u: u32, h: u32) -> vec4<u32> {
  return quants[2u * (row * part.units + u) + h];
}

/** Prefill GEMM: (scale, offset) of elements 16h..16h+15: value = d · q. */
fn unit_half_scale(row: u32, u: u32, h: u32) -> vec2<f32> {
  return vec2<f32>(unit_scale(row, u), 0.0);
}

const UNIT_MIN_TERM: bool = false;
