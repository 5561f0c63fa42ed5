// y[t, r] (op)= Σ_c W[r, c] · x[t, c] for t < n_tokens, for one row-range part of W.
// Prepended by one linear_decode_<type>.wgsl, which defines load_unit(row, u) → the 32 weights
// of unit u of the part's row `row` as 8 vec4<f32> in element order. f32 accumulation throughout.
//
// Bindings (group 0):
//   0 quants  storage read        array<vec4<u32>>   the part's weight units (layout: decode file)
//   1 scales  storage read        array<u32>         the aux section (f16 scales, q6_K arrays); unused by f16/bf16/f32
//   2 x       storage read        array<vec4<f32>>   activations [maxTokens, cols] at part.x_offset
//   3 y       storage read_write  array<f32>         outputs [maxTokens, y_stride] at part.y_offset
//   4 params  uniform             vec4<u32>          .x = n_tokens (written once per step)
//   5 part    uniform             Meta               fixed per part (written once at load)
//   6 consts, 7 tok_rows, 8 k_cache, 9 v_cache: the integer mat-vec's decode fusions (RMSNorm
//     prologue, RoPE + KV-cache epilogue; see Meta and linear_matvec_q8.wgsl), placeholders otherwise
// Entry points: `matmul` (any n_tokens, prefill) here; `matvec` (n_tokens ≤ MAXT, decode) follows
// in linear_matvec_float.wgsl (f16, bf16, f32) or linear_matvec_q8.wgsl (q4_0, q8_0, q6_K).
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
  w_rows: u32,    // weight rows in this part (swiglu: 2F); decoders size their aux arrays by it
  // Decode fusions of the integer mat-vec (linear_matvec_q8.wgsl); 0xffffffff / 0 = off.
  norm_offset: u32,  // RMSNorm prologue: the norm weight's first float in `consts`
  norm_eps: f32,
  rope_q: u32,       // RoPE + KV epilogue: rows [0, rope_q) are q (rotated into y), then k, then v
  rope_kv: u32,      // rows of k (and of v): Hkv·Dh
  head_dim: u32,
  max_seq: u32,      // KV positions per sequence (the cache's MAX_SEQ)
  table_offset: u32, // the rope table's first float in `consts`: [max_seq, head_dim/2] (cos, sin)
  pad0: u32,
}

@group(0) @binding(0) var<storage, read> quants: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: vec4<u32>;
@group(0) @binding(5) var<uniform> part: Meta;
// Decode fusions only (16-byte placeholders otherwise):
@group(0) @binding(6) var<storage, read> consts: array<f32>;         // norm weights, rope table
@group(0) @binding(7) var<storage, read> tok_rows: array<vec2<u32>>; // (seq, pos) per token
@group(0) @binding(8) var<storage, read_write> k_cache: array<u32>;  // f16 pairs, attention.wgsl layout
@group(0) @binding(9) var<storage, read_write> v_cache: array<u32>;

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
// Prefill: 64 threads compute a 32-row × 32-token tile. The activations are f32, rounded to 8 bits
// per 32-block first for the integer types (QUANTIZED_ACTIVATIONS, set by the mat-vec file). Per unit of K (32 weights), the tile's 32
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
    if (QUANTIZED_ACTIVATIONS) {
      // The integer types' activations are rounded to 8 bits per 32-block, as in the mat-vec (d =
      // max|x| / 127, round(x / d)), so prefill and decode compute the same function; a token's
      // unit is the 8 vec4 xt[8·tok ..].
      var xr: array<vec4<f32>, 4>;
      for (var j = 0u; j < 4u; j++) {
        let e = lid + 64u * j;
        let t8 = (e / 8u) * 8u;
        var m = 0.0;
        for (var i = 0u; i < 8u; i++) {
          let a = abs(xt[t8 + i]);
          m = max(m, max(max(a.x, a.y), max(a.z, a.w)));
        }
        let d = m / 127.0;
        let id = select(0.0, 1.0 / d, d > 0.0);
        xr[j] = round(xt[e] * id) * d;
      }
      workgroupBarrier();
      for (var j = 0u; j < 4u; j++) {
        xt[lid + 64u * j] = xr[j];
      }
      workgroupBarrier();
    }
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
