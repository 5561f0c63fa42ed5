// q4_0 unit decoder (32 weights). Our layout, repacked at upload from the file's 18-byte blocks:
//   quants: one vec4<u32> per unit = the block's 16 nibble bytes verbatim; byte j (= word j/4,
//           bits 8·(j%4)) holds element j in its low nibble and element j+16 in its high nibble.
//   scales: one f32 per unit (the block's f16 d). Value = (nibble − 8) · d.

fn load_unit(idx: u32) -> array<vec4<f32>, 8> {
  let q = quants[idx];
  let d = scales[idx];
  var w: array<vec4<f32>, 8>;
  for (var i = 0u; i < 4u; i++) {
    let b = vec4<u32>(q[i]) >> vec4<u32>(0u, 8u, 16u, 24u);
    w[i] = (vec4<f32>(b & vec4<u32>(0xfu)) - 8.0) * d;
    w[i + 4u] = (vec4<f32>((b >> vec4<u32>(4u)) & vec4<u32>(0xfu)) - 8.0) * d;
  }
  return w;
}
