// bf16 unit decoder (32 weights). Layout: the file's bf16 values verbatim, two per u32 (element 2j
// in the low 16 bits of word j); four vec4<u32> per unit. bf16 is the top half of an f32.

fn bf16x2(v: u32) -> vec2<f32> {
  return vec2<f32>(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xffff0000u));
}

fn load_unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
  let idx = row * part.units + u;
  var w: array<vec4<f32>, 8>;
  for (var h = 0u; h < 4u; h++) {
    let q = quants[4u * idx + h];
    w[2u * h] = vec4<f32>(bf16x2(q.x), bf16x2(q.y));
    w[2u * h + 1u] = vec4<f32>(bf16x2(q.z), bf16x2(q.w));
  }
  return w;
}
