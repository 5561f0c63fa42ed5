// f32 unit decoder (32 weights). Layout: the file's floats verbatim; eight vec4<u32> per unit.

fn load_unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
  let idx = row * part.units + u;
  var w: array<vec4<f32>, 8>;
  for (var i = 0u; i < 8u; i++) {
    w[i] = bitcast<vec4<f32>>(quants[8u * idx + i]);
  }
  return w;
}
