// The 16 levels of the IQ4 nibbles (ggml's kvalues_iq4nl: −127 −104 −83 −65 −49 −35 −22 −10 1 13
// 25 38 53 69 89 113) as int8 bytes, four per word (level k in byte k % 4 of word k / 4), and the
// decoder functions iq4_nl and iq4_xs share: both lay a unit out as 16 nibble bytes (byte j:
// element j low, j + 16 high) with value unit_scale(row, u) · level, and differ only in
// unit_scale, which each defines. Placed before the iq4_nl and iq4_xs decoders.
const IQ4_LEVELS = vec4<u32>(0xbfad9881u, 0xf6eaddcfu, 0x26190d01u, 0x71594535u);

/** Four nibbles (bytes 0..15) → their four levels as int8 bytes. */
fn iq4_i8x4(nibbles: u32) -> u32 {
  var out = 0u;
  for (var k = 0u; k < 4u; k++) {
    let n = (nibbles >> (8u * k)) & 0xfu;
    out |= ((IQ4_LEVELS[n >> 2u] >> (8u * (n & 3u))) & 0xffu) << (8u * k);
  }
  return out;
}

/** Four int8 bytes → f32 (sign-extend each byte: move it to the top, arithmetic-shift back). */
fn i8x4_to_f32(v: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

/** The 32 weights of a unit whose 16 nibble bytes are q (byte j: element j low, j + 16 high), · d. */
fn iq4_unit(q: vec4<u32>, d: f32) -> array<vec4<f32>, 8> {
  var w: array<vec4<f32>, 8>;
  for (var i = 0u; i < 4u; i++) {
    w[i] = i8x4_to_f32(iq4_i8x4(q[i] & 0x0f0f0f0fu)) * d;
    w[i + 4u] = i8x4_to_f32(iq4_i8x4((q[i] >> 4u) & 0x0f0f0f0fu)) * d;
  }
  return w;
}

/** Σ level · x over a unit's nibble bytes q and the quantized activation unit ub (integers). */
fn iq4_dot(q: vec4<u32>, ub: u32) -> i32 {
  var s = 0i;
  for (var i = 0u; i < 4u; i++) {
    s += dot4I8Packed(iq4_i8x4(q[i] & 0x0f0f0f0fu), xq[8u * ub + i]) + dot4I8Packed(iq4_i8x4((q[i] >> 4u) & 0x0f0f0f0fu), xq[8u * ub + 4u + i]);
  }
  return s;
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

/** Prefill GEMM: (scale, offset) of elements 16h..16h+15: value = unit_scale · level. */
fn unit_half_scale(row: u32, u: u32, h: u32) -> vec2<f32> {
  return vec2<f32>(unit_scale(row, u), 0.0);
}

const UNIT_MIN_TERM: bool = false;
