// Helpers shared by the integer decoders (linear_decode_<type>.wgsl of the quantized types), placed
// in front of them by linear.ts decoderSource: the nibble halves of a unit, the 5-bit values of
// q5_0 / q5_1 / q5_K, and the 6-bit scales and mins of q4_K / q5_K.

/** The nibbles of elements 16h + 4i .. 16h + 4i + 3 as bytes (0..15), from a unit's 16 nibble bytes q. */
fn nibble_half(q: vec4<u32>, h: u32) -> vec4<u32> {
  return (q >> vec4<u32>(4u * h)) & vec4<u32>(0x0f0f0f0fu);
}

/**
 * The 5-bit values of elements 16h + 4i .. 16h + 4i + 3 as bytes (0..31): the low nibbles lo (as
 * q4_0) and the fifth bits hi, element 16h + 4i + j at bit 8j + 4h + i (weights.ts regroupQ5High).
 */
fn q5_bytes(lo: vec4<u32>, hi: u32, h: u32, i: u32) -> u32 {
  return ((lo[i] >> (4u * h)) & 0x0f0f0f0fu) | (((hi >> (4u * h + i)) & 0x01010101u) << 4u);
}

/** Elements 16h..16h+15 of a unit as their 5-bit values (bytes 0..31), four per word. */
fn q5_half(lo: vec4<u32>, hi: u32, h: u32) -> vec4<u32> {
  return vec4<u32>(q5_bytes(lo, hi, h, 0u), q5_bytes(lo, hi, h, 1u), q5_bytes(lo, hi, h, 2u), q5_bytes(lo, hi, h, 3u));
}

struct KScale {
  d: f32, // d · sc of the unit
  m: f32, // dmin · m of the unit (the value is d · sc · q − dmin · m)
}

/**
 * Scale and min of unit u of `row` of a q4_K / q5_K part whose aux arrays sm and dm start at word
 * `sm` of `scales` (sub-block j = u % 8 of its 256-block; ggml's get_scale_min_k4): sm holds each
 * block's 12 bytes of packed 6-bit scales and mins, three words, then dm [R·B words] f16 d | dmin.
 */
fn k_scale(sm: u32, row: u32, u: u32) -> KScale {
  let blk = row * (part.units / 8u) + u / 8u;
  let j = u % 8u;
  let s = 8u * (j % 4u); // byte j % 4 of each word
  let w0 = scales[sm + 3u * blk];
  let w1 = scales[sm + 3u * blk + 1u];
  var sc: u32;
  var m: u32;
  if (j < 4u) {
    sc = (w0 >> s) & 63u;
    m = (w1 >> s) & 63u;
  } else {
    let w2 = scales[sm + 3u * blk + 2u];
    sc = ((w2 >> s) & 0xfu) | (((w0 >> (s + 6u)) & 3u) << 4u);
    m = ((w2 >> (s + 4u)) & 0xfu) | (((w1 >> (s + 6u)) & 3u) << 4u);
  }
  let dm = unpack2x16float(scales[sm + part.w_rows * (part.units / 8u) * 3u + blk]);
  return KScale(dm.x * f32(sc), dm.y * f32(m));
}

/** Σ q · xq over a unit's 16 nibble bytes q (0..15 are valid int8 bytes as they are) and activation unit ub. */
fn nibble_dot(q: vec4<u32>, ub: u32) -> i32 {
  var s = 0i;
  for (var i = 0u; i < 4u; i++) {
    s += dot4I8Packed(q[i] & 0x0f0f0f0fu, xq[8u * ub + i]) + dot4I8Packed((q[i] >> 4u) & 0x0f0f0f0fu, xq[8u * ub + 4u + i]);
  }
  return s;
}

/** Σ q · xq over the 5-bit values of a unit (lo nibbles, hi fifth bits; 0..31 are valid int8 bytes). */
fn q5_dot(lo: vec4<u32>, hi: u32, ub: u32) -> i32 {
  var s = 0i;
  for (var h = 0u; h < 2u; h++) {
    for (var i = 0u; i < 4u; i++) {
      s += dot4I8Packed(q5_bytes(lo, hi, h, i), xq[8u * ub + 4u * h + i]);
    }
  }
  return s;
}
