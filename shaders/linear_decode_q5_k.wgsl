// q5_K unit decoder (32 weights; a 256-weight file block is 8 units, one 32-element sub-block
// each). Our layout, split at upload (src/engine/gpu/weights.ts repackQ45K), R = the part's rows
// (part.w_rows), U = units per row, B = U / 8 blocks per row, idx = row · U + u:
//   quants: one vec4<u32> per unit: byte j holds element j's low 4 bits (low nibble) and element
//           j+16's (high nibble), like q4_0;
//   aux:    hi [R·U words]: word idx has the 5th bit of element 16h + 4i + j at bit 8j + 4h + i;
//           then sm [R·B·3 words]: the block's 12 bytes of packed 6-bit scales and mins verbatim
//           (ggml's get_scale_min_k4); then dm [R·B words]: f16 d (low), f16 dmin (high).
//   Value = d·sc·q − dmin·m, q the 5-bit value. 22 bytes per 32 weights, as in the file.

struct KScale {
  d: f32, // d · sc of the unit
  m: f32, // dmin · m of the unit
}

/** Scale and min of unit u of `row` (sub-block j = u % 8 of its block; get_scale_min_k4). */
fn k_scale(row: u32, u: u32) -> KScale {
  let blk = row * (part.units / 8u) + u / 8u;
  let sm = part.w_rows * part.units; // the sm array's first word (after hi)
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

/** The 5-bit values of elements 16h + 4i .. 16h + 4i + 3 as bytes (0..31). */
fn q5_bytes(lo: vec4<u32>, hi: u32, h: u32, i: u32) -> u32 {
  return ((lo[i] >> (4u * h)) & 0x0f0f0f0fu) | (((hi >> (4u * h + i)) & 0x01010101u) << 4u);
}

fn load_unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
  let idx = row * part.units + u;
  let lo = quants[idx];
  let hi = scales[idx];
  let s = k_scale(row, u);
  var w: array<vec4<f32>, 8>;
  for (var h = 0u; h < 2u; h++) {
    for (var i = 0u; i < 4u; i++) {
      let b = vec4<u32>(q5_bytes(lo, hi, h, i)) >> vec4<u32>(0u, 8u, 16u, 24u);
      w[4u * h + i] = vec4<f32>(b & vec4<u32>(0xffu)) * s.d - s.m;
    }
  }
  return w;
}

/** Σ q · xq over unit u of `row` (5-bit values 0..31 are valid int8 bytes as they are). */
fn k5_dot(row: u32, u: u32, ub: u32) -> i32 {
  let idx = row * part.units + u;
  let lo = quants[idx];
  let hi = scales[idx];
  var s = 0i;
  for (var h = 0u; h < 2u; h++) {
    for (var i = 0u; i < 4u; i++) {
      s += dot4I8Packed(q5_bytes(lo, hi, h, i), xq[8u * ub + 4u * h + i]);
    }
  }
  return s;
}

/** Σ xq over activation unit ub: the min term's dmin·m · Σ x (llama.cpp's q8_1 block sum). */
fn xq_sum(ub: u32) -> i32 {
  var s = 0i;
  for (var k = 0u; k < 8u; k++) {
    s += dot4I8Packed(xq[8u * ub + k], 0x01010101u);
  }
  return s;
}

/** Integer mat-vec: unit u of rows row0 and row1 · quantized activation unit ub (xq, xd). */
fn unit_dot2(row0: u32, row1: u32, u: u32, ub: u32) -> vec2<f32> {
  let xs = f32(xq_sum(ub));
  let s0 = k_scale(row0, u);
  let s1 = k_scale(row1, u);
  let a = s0.d * f32(k5_dot(row0, u, ub)) - s0.m * xs;
  let b = s1.d * f32(k5_dot(row1, u, ub)) - s1.m * xs;
  return vec2<f32>(a, b) * xd[ub];
}
