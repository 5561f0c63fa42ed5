// q6_K unit decoder (32 weights; a 256-weight file block is 8 units). Our layout, split at upload
// into aligned arrays (the file's ql/qh interleave across 128-element halves undone), R = the
// part's rows (part.w_rows), U = units per row, idx = row · U + u:
//   quants: one vec4<u32> per unit: byte j holds element j's low 4 bits (low nibble) and element
//           j+16's (high nibble), like q4_0;
//   aux:    hi [R·U·2 words]: word 2·idx + h has the top 2 bits of element 16h + 4i + j at bits
//           8j + 2i; then sc [R·U/2 words]: the unit's two int8 sub-scales (elements 0..15,
//           16..31) at bytes 2·(idx % 2), +1 of word idx / 2; then d [R·⌈U/16⌉ words]: the block's
//           f16 d, two blocks per word. Value = (q − 32) · d · sc, q the 6-bit value.
//   26.25 bytes per 32 weights, as in the file.

struct Q6Scales {
  s0: f32, // d · sc of elements 0..15
  s1: f32, // d · sc of elements 16..31
}

fn q6_scales(row: u32, u: u32) -> Q6Scales {
  let idx = row * part.units + u;
  let hi_words = part.w_rows * part.units * 2u;
  let sc_words = part.w_rows * part.units / 2u;
  let scw = scales[hi_words + idx / 2u] >> (16u * (idx % 2u));
  let sc0 = f32(bitcast<i32>(scw << 24u) >> 24u);
  let sc1 = f32(bitcast<i32>(scw << 16u) >> 24u);
  let dw = scales[hi_words + sc_words + row * ((part.units + 15u) / 16u) + u / 16u];
  let d = unpack2x16float(dw)[(u / 8u) % 2u];
  return Q6Scales(d * sc0, d * sc1);
}

/** The 6-bit values of elements 16h + 4i .. 16h + 4i + 3 as bytes (0..63). */
fn q6_bytes(lo: vec4<u32>, hi: u32, h: u32, i: u32) -> u32 {
  return ((lo[i] >> (4u * h)) & 0x0f0f0f0fu) | (((hi >> (2u * i)) & 0x03030303u) << 4u);
}

fn load_unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
  let idx = row * part.units + u;
  let lo = quants[idx];
  let s = q6_scales(row, u);
  var w: array<vec4<f32>, 8>;
  for (var h = 0u; h < 2u; h++) {
    let hi = scales[2u * idx + h];
    let sh = select(s.s0, s.s1, h == 1u);
    for (var i = 0u; i < 4u; i++) {
      let b = vec4<u32>(q6_bytes(lo, hi, h, i)) >> vec4<u32>(0u, 8u, 16u, 24u);
      w[4u * h + i] = (vec4<f32>(b & vec4<u32>(0xffu)) - 32.0) * sh;
    }
  }
  return w;
}

/** 6-bit bytes q (0..63) → the int8 bytes q − 32: flip bit 5, then sign-extend it into bits 6, 7. */
fn q6_to_i8(v: u32) -> u32 {
  let s = v ^ 0x20202020u;
  return s | ((s & 0x20202020u) * 6u);
}

/** Σ (q − 32) · x over the two 16-element halves of unit u of `row` (integers). */
fn q6_dot_halves(row: u32, u: u32, ub: u32) -> vec2<i32> {
  let idx = row * part.units + u;
  let lo = quants[idx];
  var s = vec2<i32>(0i);
  for (var h = 0u; h < 2u; h++) {
    let hi = scales[2u * idx + h];
    for (var i = 0u; i < 4u; i++) {
      s[h] += dot4I8Packed(q6_to_i8(q6_bytes(lo, hi, h, i)), xq[8u * ub + 4u * h + i]);
    }
  }
  return s;
}

/** Integer mat-vec: unit u of rows row0 and row1 · quantized activation unit ub (xq, xd). */
fn unit_dot2(row0: u32, row1: u32, u: u32, ub: u32) -> vec2<f32> {
  let a = q6_dot_halves(row0, u, ub);
  let b = q6_dot_halves(row1, u, ub);
  let sa = q6_scales(row0, u);
  let sb = q6_scales(row1, u);
  return vec2<f32>(sa.s0 * f32(a.x) + sa.s1 * f32(a.y), sb.s0 * f32(b.x) + sb.s1 * f32(b.y)) * xd[ub];
}

/** Prefill GEMM: elements 16h..16h+15 of unit u of `row` as int8 (q − 32), four per word. */
fn unit_half_i8(row: u32, u: u32, h: u32) -> vec4<u32> {
  let idx = row * part.units + u;
  let lo = quants[idx];
  let hi = scales[2u * idx + h];
  return vec4<u32>(
    q6_to_i8(q6_bytes(lo, hi, h, 0u)),
    q6_to_i8(q6_bytes(lo, hi, h, 1u)),
    q6_to_i8(q6_bytes(lo, hi, h, 2u)),
    q6_to_i8(q6_bytes(lo, hi, h, 3u)),
  );
}

/** Prefill GEMM: (scale, offset) of elements 16h..16h+15: value = d · sc_h · (q − 32). */
fn unit_half_scale(row: u32, u: u32, h: u32) -> vec2<f32> {
  let s = q6_scales(row, u);
  return vec2<f32>(select(s.s0, s.s1, h == 1u), 0.0);
}

const UNIT_MIN_TERM: bool = false;
