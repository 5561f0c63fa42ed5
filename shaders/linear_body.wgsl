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
// Entry points: `matvec` (n_tokens ≤ MAXT, decode) in linear_matvec_float.wgsl (f16, bf16, f32) or
// linear_matvec_q8.wgsl (every quantized type); `matmul` (any n_tokens, prefill) after it in
// linear_matmul_float.wgsl or linear_matmul_q8.wgsl (the integer GEMM).
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
