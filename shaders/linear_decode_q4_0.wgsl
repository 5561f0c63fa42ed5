// q4_0 unit decoder (32 weights). Our layout, split at upload from the file's 18-byte blocks:
//   quants: one vec4<u32> per unit = the block's 16 nibble bytes verbatim; byte j (= word j/4,
//           bits 8·(j%4)) holds element j in its low nibble and element j+16 in its high nibble.
//   aux:    the block's f16 d, two per u32 (unit u of a row in half u % 2 of word u / 2), ⌈U/2⌉
//           words per row. Value = (nibble − 8) · d. 18 bytes per 32 weights, as in the file.

fn unit_scale(row: u32, u: u32) -> f32 {
  return unpack2x16float(scales[row * ((part.units + 1u) / 2u) + u / 2u])[u % 2u];
}

fn load_unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
  let q = quants[row * part.units + u];
  let d = unit_scale(row, u);
  var w: array<vec4<f32>, 8>;
  for (var i = 0u; i < 4u; i++) {
    let b = vec4<u32>(q[i]) >> vec4<u32>(0u, 8u, 16u, 24u);
    w[i] = (vec4<f32>(b & vec4<u32>(0xfu)) - 8.0) * d;
    w[i + 4u] = (vec4<f32>((b >> vec4<u32>(4u)) & vec4<u32>(0xfu)) - 8.0) * d;
  }
  return w;
}

/** Nibble bytes (0..15) → the int8 bytes n − 8: flip bit 3, then sign-extend it into bits 4..7. */
fn nibbles_to_i8(v: u32) -> u32 {
  let s = v ^ 0x08080808u;
  return s | ((s & 0x08080808u) * 0x1eu);
}

/** Integer mat-vec: unit u of rows row0 and row1 · quantized activation unit ub (xq, xd). */
fn unit_dot2(row0: u32, row1: u32, u: u32, ub: u32) -> vec2<f32> {
  let q0 = quants[row0 * part.units + u];
  let q1 = quants[row1 * part.units + u];
  var s0 = 0i;
  var s1 = 0i;
  for (var i = 0u; i < 4u; i++) {
    let xl = xq[8u * ub + i]; // elements 4i..4i+3
    let xh = xq[8u * ub + 4u + i]; // elements 16+4i..
    s0 += dot4I8Packed(nibbles_to_i8(q0[i] & 0x0f0f0f0fu), xl) + dot4I8Packed(nibbles_to_i8((q0[i] >> 4u) & 0x0f0f0f0fu), xh);
    s1 += dot4I8Packed(nibbles_to_i8(q1[i] & 0x0f0f0f0fu), xl) + dot4I8Packed(nibbles_to_i8((q1[i] >> 4u) & 0x0f0f0f0fu), xh);
  }
  return vec2<f32>(f32(s0) * unit_scale(row0, u), f32(s1) * unit_scale(row1, u)) * xd[ub];
}

/** Prefill GEMM: elements 16h..16h+15 of unit u of `row` as int8 (n − 8), four per word. */
fn unit_half_i8(row: u32, u: u32, h: u32) -> vec4<u32> {
  let q = nibble_half(quants[row * part.units + u], h);
  return vec4<u32>(nibbles_to_i8(q.x), nibbles_to_i8(q.y), nibbles_to_i8(q.z), nibbles_to_i8(q.w));
}

/** Prefill GEMM: (scale, offset) of elements 16h..16h+15: value = d · (n − 8). */
fn unit_half_scale(row: u32, u: u32, h: u32) -> vec2<f32> {
  return vec2<f32>(unit_scale(row, u), 0.0);
}

const UNIT_MIN_TERM: bool = false;
