// q6_K unit decoder (32 weights; a 256-weight file block becomes 8 units). Our layout, repacked at
// upload (the file's ql/qh interleave across 128-element halves is undone):
//   quants: two vec4<u32> per unit:
//     [0] = 4 words of low nibbles: byte j holds element j's low 4 bits (low nibble) and element
//           j+16's (high nibble), like q4_0;
//     [1] = (hi0, hi1, s0, s1): hi0 bits 2i..2i+1 = element i's top 2 bits (i < 16), hi1 the same
//           for elements 16..31; s0/s1 = f32 bits of d·scale for elements 0..15 / 16..31.
//   Value = (q − 32) · s, q the 6-bit value. 32 bytes per 32 weights (the file: 26.25).

fn load_unit(idx: u32) -> array<vec4<f32>, 8> {
  let lo = quants[2u * idx];
  let hs = quants[2u * idx + 1u];
  let s0 = bitcast<f32>(hs.z);
  let s1 = bitcast<f32>(hs.w);
  var w: array<vec4<f32>, 8>;
  for (var i = 0u; i < 4u; i++) {
    let b = vec4<u32>(lo[i]) >> vec4<u32>(0u, 8u, 16u, 24u);
    let hsh = vec4<u32>(8u * i) + vec4<u32>(0u, 2u, 4u, 6u);
    let h0 = (vec4<u32>(hs.x) >> hsh) & vec4<u32>(3u);
    let h1 = (vec4<u32>(hs.y) >> hsh) & vec4<u32>(3u);
    w[i] = (vec4<f32>((b & vec4<u32>(0xfu)) | (h0 << vec4<u32>(4u))) - 32.0) * s0;
    w[i + 4u] = (vec4<f32>(((b >> vec4<u32>(4u)) & vec4<u32>(0xfu)) | (h1 << vec4<u32>(4u))) - 32.0) * s1;
  }
  return w;
}
