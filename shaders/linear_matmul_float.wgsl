// ---------------------------------------------------------------------------------------------
// The float prefill mat-mat (f16, bf16, f32 weights), appended after linear_matvec_float.wgsl; the
// quantized types run the integer GEMM of linear_matmul_q8.wgsl instead.
// 64 threads compute a 32-row × 32-token tile. Per unit of K (32 weights), the tile's 32
// weight units are dequantized once into workgroup memory (as vec4) and the 32-token activation
// slice is staged next to it; each thread then accumulates a 4-row × 4-token block. Swiglu tiles hold 16 gate rows and the
// 16 matching up rows so that both land in the same thread.
// ---------------------------------------------------------------------------------------------

var<workgroup> wt: array<vec4<f32>, 256>; // [tile row][k / 4]
var<workgroup> xt: array<vec4<f32>, 256>; // [tile token][k / 4]

fn tile_row(tile: u32, ti: u32) -> vec2<u32> {
  // Returns (weight row within the part, valid).
  if (part.epilogue == 2u) {
    let f = tile * 16u + (ti % 16u);
    return vec2<u32>(select(f, f + part.rows, ti >= 16u), u32(f < part.rows));
  }
  let r = tile * 32u + ti;
  return vec2<u32>(r, u32(r < part.rows));
}

@compute @workgroup_size(64)
fn matmul(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let n_tok = params.x;
  let t0 = wid.y * 32u;
  let a = lid % 8u;
  let b = lid / 8u;
  // Tile rows (2a, 2a+1, 16+2a, 17+2a) × tile tokens (b, b+8, b+16, b+24); acc[r][j].
  var acc: array<vec4<f32>, 4>;

  for (var u = 0u; u < part.units; u++) {
    if (lid < 32u) {
      let tr = tile_row(wid.x, lid);
      var w: array<vec4<f32>, 8>;
      if (tr.y != 0u) {
        w = load_unit(tr.x, u);
      }
      for (var i = 0u; i < 8u; i++) {
        wt[lid * 8u + i] = w[i];
      }
    }
    for (var j = 0u; j < 4u; j++) {
      let e = lid + 64u * j; // 256 vec4 = 32 tokens × 8 vec4
      let tok = e / 8u;
      var xv = vec4<f32>(0.0);
      if (t0 + tok < n_tok) {
        xv = x[part.x_offset / 4u + ((t0 + tok) * part.units + u) * 8u + e % 8u];
      }
      xt[e] = xv;
    }
    workgroupBarrier();
    for (var k = 0u; k < 8u; k++) {
      let w0 = wt[(2u * a) * 8u + k];
      let w1 = wt[(2u * a + 1u) * 8u + k];
      let w2 = wt[(16u + 2u * a) * 8u + k];
      let w3 = wt[(17u + 2u * a) * 8u + k];
      let xs = array<vec4<f32>, 4>(xt[b * 8u + k], xt[(b + 8u) * 8u + k], xt[(b + 16u) * 8u + k], xt[(b + 24u) * 8u + k]);
      acc[0] += vec4<f32>(dot(w0, xs[0]), dot(w0, xs[1]), dot(w0, xs[2]), dot(w0, xs[3]));
      acc[1] += vec4<f32>(dot(w1, xs[0]), dot(w1, xs[1]), dot(w1, xs[2]), dot(w1, xs[3]));
      acc[2] += vec4<f32>(dot(w2, xs[0]), dot(w2, xs[1]), dot(w2, xs[2]), dot(w2, xs[3]));
      acc[3] += vec4<f32>(dot(w3, xs[0]), dot(w3, xs[1]), dot(w3, xs[2]), dot(w3, xs[3]));
    }
    workgroupBarrier();
  }

  for (var j = 0u; j < 4u; j++) {
    let t = t0 + b + 8u * j;
    if (t >= n_tok) {
      continue;
    }
    if (part.epilogue == 2u) {
      for (var r = 0u; r < 2u; r++) {
        let f = wid.x * 16u + 2u * a + r;
        if (f < part.rows) {
          write_out(t, f, silu(acc[r][j]) * acc[r + 2u][j]);
        }
      }
    } else {
      for (var r = 0u; r < 4u; r++) {
        let row = wid.x * 32u + select(2u * a + r, 16u + 2u * a + r - 2u, r >= 2u);
        if (row < part.rows) {
          write_out(t, row, acc[r][j]);
        }
      }
    }
  }
}
