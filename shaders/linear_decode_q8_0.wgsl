// q8_0 unit decoder (32 weights). Our layout, repacked at upload from the file's 34-byte blocks:
//   quants: two vec4<u32> per unit = the block's 32 int8 bytes verbatim (word j = elements 4j..4j+3,
//           little-endian);  scales: one f32 per unit (the block's f16 d). Value = q · d.

fn load_unit(idx: u32) -> array<vec4<f32>, 8> {
  let d = scales[idx];
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
