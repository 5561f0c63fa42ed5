// The integer prefill GEMM (every quantized type), appended after linear_matvec_q8.wgsl. The
// decoder in front defines unit_half_i8(row, u, h) → elements 16h..16h+15 of unit u of `row` as
// int8, four per u32 in element order, unit_half_scale(row, u, h) → (scale, offset m) with value =
// scale · q + m (m is per unit: q4_1, q5_1 m; q4_K, q5_K −dmin·m; 0 elsewhere), and the constant
// UNIT_MIN_TERM (whether m can be non-zero).
//
// One workgroup of 256 threads computes a 64-row × 64-token tile of y. Per unit of K (32
// weights), threads 0..127 each decode half a unit of one tile row (weights dequantized once per
// tile, to int8 + a scale), threads 128..255 each quantize half a unit of one token's activations
// (d = max|x| / 127 over the 32-block, q = round(x / d): the mat-vec's arithmetic, so prefill and
// decode compute the same function). Both go to workgroup memory in two buffers: while the
// threads multiply unit u from one, unit u + 1 is staged in the other, so each unit costs one
// barrier. Every thread then accumulates a 4-row × 4-token register block with dot4I8Packed:
// rows (2a, 2a + 1, 32 + 2a, 33 + 2a), tokens (b, b + 16, b + 32, b + 48), a = lid % 16,
// b = lid / 16. With UNIT_MIN_TERM the threads that quantize a token's unit also store its Σ of
// dequantized activations d · Σq (once per unit and token, beside d), and every unit adds
// m · d · Σq per (row, token) to the block: Σ (s·q + m) · d·xq = s·d·Σ q·xq + m·d·Σ xq.
// Weights are stored as row pairs (vec2) so that the 16 threads of a row group read 16
// consecutive vec2 (no bank conflict), activations as [word][token] (two addresses per 32
// threads: broadcast). Swiglu tiles hold 32 gate rows and the 32 matching up rows, so gate f
// and up f land in the same thread; a RoPE pair (r, r + 1) too.
//
// Fusions (the decode mat-vec's contracts, see Meta in linear_body.wgsl): RMSNorm prologue (the
// workgroup computes its 64 tokens' scales first) and the RoPE + KV-cache epilogue
// (rope_kv_store of linear_matvec_q8.wgsl).
// Dispatch: (ceil(n_tokens / 64), row tiles): workgroups next to each other in x share one
// weight tile, so it is read from DRAM once and then from L2 for the other token tiles.

const GM_TOKENS: u32 = 64u;

var<workgroup> gw: array<vec2<u32>, 512>;  // [buf][word k < 8][row pair < 32]: int8 weights
var<workgroup> gws: array<vec2<f32>, 128>; // [buf][tile row]: scales of elements 0..15, 16..31
var<workgroup> gwm: array<f32, 128>;       // [buf][tile row]: the unit's offset m (UNIT_MIN_TERM)
var<workgroup> gx: array<u32, 1024>;       // [buf][word k < 8][tile token]: int8 activations
var<workgroup> gxd: array<f32, 128>;       // [buf][tile token]: d
var<workgroup> gxs: array<f32, 128>;       // [buf][tile token]: d · Σq over the unit (UNIT_MIN_TERM)
var<workgroup> gss: array<f32, 256>;       // RMSNorm prologue: partial sums of squares
var<workgroup> gscale: array<f32, 64>;     // RMSNorm prologue: 1 / rms per tile token

/** (weight row, valid) of tile row r < 64 of row tile `tile`. */
fn gemm_row(tile: u32, r: u32) -> vec2<u32> {
  if (part.epilogue == 2u) {
    let f = tile * 32u + (r % 32u);
    return vec2<u32>(select(f, f + part.rows, r >= 32u), u32(f < part.rows));
  }
  let row = tile * 64u + r;
  return vec2<u32>(row, u32(row < part.rows));
}

/** Stage unit u of the tile's weights and activations into buffer `buf`. */
fn gemm_stage(buf: u32, u: u32, lid: u32, tile: u32, tok0: u32, n_tok: u32) {
  if (lid < 128u) {
    let r = lid / 2u;
    let h = lid % 2u;
    let tr = gemm_row(tile, r);
    var q = vec4<u32>(0u);
    var s = vec2<f32>(0.0);
    if (tr.y != 0u) {
      q = unit_half_i8(tr.x, u, h);
      s = unit_half_scale(tr.x, u, h);
    }
    for (var i = 0u; i < 4u; i++) {
      gw[(buf * 8u + 4u * h + i) * 32u + r / 2u][r % 2u] = q[i];
    }
    gws[buf * 64u + r][h] = s.x;
    if (UNIT_MIN_TERM && h == 0u) {
      gwm[buf * 64u + r] = s.y;
    }
  } else {
    let tok = (lid - 128u) / 2u;
    let h = lid % 2u;
    let t = tok0 + tok;
    var v: array<vec4<f32>, 8>;
    if (t < n_tok) {
      let base = part.x_offset / 4u + (t * part.units + u) * 8u;
      for (var i = 0u; i < 8u; i++) {
        v[i] = x[base + i];
      }
      if (part.norm_offset != NO_NORM) {
        for (var i = 0u; i < 8u; i++) {
          let o = part.norm_offset + u * 32u + 4u * i;
          v[i] = v[i] * gscale[tok] * vec4<f32>(consts[o], consts[o + 1u], consts[o + 2u], consts[o + 3u]);
        }
      }
    }
    var m = 0.0;
    for (var i = 0u; i < 8u; i++) {
      let a = abs(v[i]);
      m = max(m, max(max(a.x, a.y), max(a.z, a.w)));
    }
    let d = m / 127.0;
    let id = select(0.0, 1.0 / d, d > 0.0);
    for (var i = 0u; i < 4u; i++) {
      gx[(buf * 8u + 4u * h + i) * 64u + tok] = pack4xI8(vec4<i32>(round(v[4u * h + i] * id)));
    }
    if (h == 0u) {
      gxd[buf * 64u + tok] = d;
    }
    if (UNIT_MIN_TERM) {
      // Both threads of the token sum all 32 rounded values (the same arithmetic, no divergence);
      // exact in f32 (|Σq| ≤ 32 · 127).
      var sq = 0.0;
      for (var i = 0u; i < 8u; i++) {
        sq += dot(round(v[i] * id), vec4<f32>(1.0));
      }
      if (h == 1u) {
        gxs[buf * 64u + tok] = d * sq;
      }
    }
  }
}

@compute @workgroup_size(256)
fn matmul(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let n_tok = params.x;
  let tok0 = wid.x * GM_TOKENS;
  let tile = wid.y;
  let a = lid % 16u;
  let b = lid / 16u;

  if (part.norm_offset != NO_NORM) {
    // 4 threads per tile token sum its squares; the scales are used when x is staged.
    let tok = lid / 4u;
    var ss = 0.0;
    if (tok0 + tok < n_tok) {
      let base = part.x_offset / 4u + (tok0 + tok) * part.units * 8u;
      for (var i = lid % 4u; i < part.units * 8u; i += 4u) {
        let v = x[base + i];
        ss += dot(v, v);
      }
    }
    gss[lid] = ss;
    workgroupBarrier();
    if (lid < 64u) {
      let s = gss[4u * lid] + gss[4u * lid + 1u] + gss[4u * lid + 2u] + gss[4u * lid + 3u];
      gscale[lid] = 1.0 / sqrt(s / f32(part.units * 32u) + part.norm_eps);
    }
    workgroupBarrier();
  }

  // acc[i][j]: tile row (2a, 2a + 1, 32 + 2a, 33 + 2a)[i] × tile token b + 16j.
  var acc: array<vec4<f32>, 4>;
  gemm_stage(0u, 0u, lid, tile, tok0, n_tok);
  workgroupBarrier();
  for (var u = 0u; u < part.units; u++) {
    let buf = u % 2u;
    if (u + 1u < part.units) {
      gemm_stage(1u - buf, u + 1u, lid, tile, tok0, n_tok);
    }
    let xd = vec4<f32>(gxd[buf * 64u + b], gxd[buf * 64u + b + 16u], gxd[buf * 64u + b + 32u], gxd[buf * 64u + b + 48u]);
    for (var h = 0u; h < 2u; h++) {
      var s0 = vec4<i32>(0i);
      var s1 = vec4<i32>(0i);
      var s2 = vec4<i32>(0i);
      var s3 = vec4<i32>(0i);
      for (var i = 0u; i < 4u; i++) {
        let k = buf * 8u + 4u * h + i;
        let w01 = gw[k * 32u + a];
        let w23 = gw[k * 32u + 16u + a];
        let xv = vec4<u32>(gx[k * 64u + b], gx[k * 64u + b + 16u], gx[k * 64u + b + 32u], gx[k * 64u + b + 48u]);
        s0 += vec4<i32>(dot4I8Packed(w01.x, xv.x), dot4I8Packed(w01.x, xv.y), dot4I8Packed(w01.x, xv.z), dot4I8Packed(w01.x, xv.w));
        s1 += vec4<i32>(dot4I8Packed(w01.y, xv.x), dot4I8Packed(w01.y, xv.y), dot4I8Packed(w01.y, xv.z), dot4I8Packed(w01.y, xv.w));
        s2 += vec4<i32>(dot4I8Packed(w23.x, xv.x), dot4I8Packed(w23.x, xv.y), dot4I8Packed(w23.x, xv.z), dot4I8Packed(w23.x, xv.w));
        s3 += vec4<i32>(dot4I8Packed(w23.y, xv.x), dot4I8Packed(w23.y, xv.y), dot4I8Packed(w23.y, xv.z), dot4I8Packed(w23.y, xv.w));
      }
      acc[0] += vec4<f32>(s0) * (gws[buf * 64u + 2u * a][h] * xd);
      acc[1] += vec4<f32>(s1) * (gws[buf * 64u + 2u * a + 1u][h] * xd);
      acc[2] += vec4<f32>(s2) * (gws[buf * 64u + 32u + 2u * a][h] * xd);
      acc[3] += vec4<f32>(s3) * (gws[buf * 64u + 33u + 2u * a][h] * xd);
    }
    if (UNIT_MIN_TERM) {
      let xs = vec4<f32>(gxs[buf * 64u + b], gxs[buf * 64u + b + 16u], gxs[buf * 64u + b + 32u], gxs[buf * 64u + b + 48u]);
      acc[0] += gwm[buf * 64u + 2u * a] * xs;
      acc[1] += gwm[buf * 64u + 2u * a + 1u] * xs;
      acc[2] += gwm[buf * 64u + 32u + 2u * a] * xs;
      acc[3] += gwm[buf * 64u + 33u + 2u * a] * xs;
    }
    workgroupBarrier();
  }

  for (var j = 0u; j < 4u; j++) {
    let t = tok0 + b + 16u * j;
    if (t >= n_tok) {
      continue;
    }
    if (part.epilogue == 2u) {
      for (var i = 0u; i < 2u; i++) {
        let f = tile * 32u + 2u * a + i;
        if (f < part.rows) {
          write_out(t, f, silu(acc[i][j]) * acc[i + 2u][j]);
        }
      }
    } else if (part.rope_q != 0u) {
      for (var p = 0u; p < 2u; p++) {
        let r = tile * 64u + 32u * p + 2u * a; // rows are (H + 2·Hkv)·Dh, even: r + 1 exists too
        if (r < part.rows) {
          rope_kv_store(t, r, vec2<f32>(acc[2u * p][j], acc[2u * p + 1u][j]));
        }
      }
    } else {
      for (var i = 0u; i < 4u; i++) {
        let r = tile * 64u + 32u * (i / 2u) + 2u * a + i % 2u;
        if (r < part.rows) {
          write_out(t, r, acc[i][j]);
        }
      }
    }
  }
}
