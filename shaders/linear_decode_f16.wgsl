// f16 unit decoder (32 weights). Layout: the file's halves verbatim, two per u32 (element 2j in the
// low 16 bits of word j); four vec4<u32> per unit; unpacked with unpack2x16float, so no shader-f16.

fn load_unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
  let idx = row * part.units + u;
  var w: array<vec4<f32>, 8>;
  for (var h = 0u; h < 4u; h++) {
    let q = quants[4u * idx + h];
    w[2u * h] = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
    w[2u * h + 1u] = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
  }
  return w;
}
