// y[t, r] (op)= Σ_c W[r, c] · x[t, c] for t < n_tokens, for one row-range part of W.
// Prepended by one linear_decode_<type>.wgsl, which defines load_unit(idx) → the 32 weights
// of unit idx (= row · units + unit) as 8 vec4<f32> in element order. f32 accumulation throughout.
//
// Bindings (group 0):
//   0 quants  storage read        array<vec4<u32>>   the part's weight units (layout: decode file)
//   1 scales  storage read        array<f32>         one per unit (q4_0, q8_0); unused otherwise
//   2 x       storage read        array<vec4<f32>>   activations [maxTokens, cols] at part.x_offset
//   3 y       storage read_write  array<f32>         outputs [maxTokens, y_stride] at part.y_offset
//   4 params  uniform             vec4<u32>          .x = n_tokens (written once per step)
//   5 part    uniform             Meta               fixed per part (written once at load)
// Entry points: `matvec` (n_tokens ≤ MAXT, decode) and `matmul` (any n_tokens, prefill).
// part.epilogue: 0 store y = Wx; 1 accumulate y += Wx (residual add); 2 swiglu: the part holds
// 2·part.rows rows [gate; up] and y[t, f] = silu(gate_f · x) · (up_f · x) for f < part.rows.
// It is a uniform, not an override: one pipeline per entry point serves every epilogue (compiling
// is slow on some drivers), and the branch is uniform across the dispatch.

struct Meta {
  rows: u32,      // rows of this part (swiglu: F, the part holding 2F rows)
  row_start: u32, // output column of the part's first row
  units: u32,     // cols / 32
  y_stride: u32,  // floats per token row of y
  x_offset: u32,  // floats, multiple of 4
  y_offset: u32,  // floats
  epilogue: u32,  // 0 store, 1 accumulate, 2 swiglu
  pad1: u32,
}

@group(0) @binding(0) var<storage, read> quants: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: vec4<u32>;
@group(0) @binding(5) var<uniform> part: Meta;

/** Mat-vec workgroup size and threads per row pair (TPR a power of two dividing WG). */
override WG: u32 = 128u;
override TPR: u32 = 32u;

/** Most tokens the mat-vec path is dispatched for (the host switches to matmul above). */
const MAXT: u32 = 8u;

fn silu(v: f32) -> f32 {
  return v / (1.0 + exp(-v));
}

fn write_out(t: u32, col: u32, v: f32) {
  let i = part.y_offset + t * part.y_stride + part.row_start + col;
  if (part.epilogue == 1u) {
    y[i] = y[i] + v;
  } else {
    y[i] = v;
  }
}

// ---------------------------------------------------------------------------------------------
// Decode: each group of TPR threads owns a row pair (swiglu: gate row f and up row F + f) and
// strides over the units of K; each x unit is loaded once and used for both rows. Tokens are done
// one after another (n_tokens ≤ MAXT): for decode (one token) nothing is repeated, for a few tokens
// the weight units are re-read from cache. Lane sums meet in a workgroup-memory tree.
// ---------------------------------------------------------------------------------------------

var<workgroup> partial: array<f32, 2u * WG>; // [row of the pair][lid]

@compute @workgroup_size(WG)
fn matvec(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let n_tok = min(params.x, MAXT);
  let groups = WG / TPR;
  let lane = lid % TPR;
  let swiglu = part.epilogue == 2u;
  let n_pairs = select((part.rows + 1u) / 2u, part.rows, swiglu);
  // Workgroups beyond maxComputeWorkgroupsPerDimension are folded into y.
  let pair = (wid.y * nwg.x + wid.x) * groups + lid / TPR;
  // Clamp so that inactive groups still load valid addresses (they must reach the barriers).
  let p = min(pair, n_pairs - 1u);
  let row0 = select(2u * p, p, swiglu);
  let row1 = select(min(2u * p + 1u, part.rows - 1u), p + part.rows, swiglu);

  for (var t = 0u; t < n_tok; t++) {
    let xt0 = part.x_offset / 4u + t * part.units * 8u;
    var s0 = 0.0;
    var s1 = 0.0;
    for (var u = lane; u < part.units; u += TPR) {
      let w0 = load_unit(row0 * part.units + u);
      let w1 = load_unit(row1 * part.units + u);
      for (var i = 0u; i < 8u; i++) {
        let xv = x[xt0 + u * 8u + i];
        s0 += dot(w0[i], xv);
        s1 += dot(w1[i], xv);
      }
    }
    partial[lid] = s0;
    partial[WG + lid] = s1;
    workgroupBarrier();
    for (var stride = TPR / 2u; stride > 0u; stride /= 2u) {
      if (lane < stride) {
        partial[lid] += partial[lid + stride];
        partial[WG + lid] += partial[WG + lid + stride];
      }
      workgroupBarrier();
    }
    if (lane == 0u && pair < n_pairs) {
      let v0 = partial[lid];
      let v1 = partial[WG + lid];
      if (swiglu) {
        write_out(t, pair, silu(v0) * v1);
      } else {
        write_out(t, 2u * pair, v0);
        if (2u * pair + 1u < part.rows) {
          write_out(t, 2u * pair + 1u, v1);
        }
      }
    }
    workgroupBarrier(); // partial is reused by the next token
  }
}

// ---------------------------------------------------------------------------------------------
// Prefill: 64 threads compute a 32-row × 32-token tile. Per unit of K (32 weights), the tile's 32
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
        w = load_unit(tr.x * part.units + u);
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
