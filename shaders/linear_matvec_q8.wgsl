// The integer mat-vec (every quantized type), appended to linear_body.wgsl; the decoder in
// front defines unit_dot2(row0, row1, u, ub) → the f32 dot products of unit u of rows row0 and
// row1 with the quantized activation unit ub of workgroup memory (dot4I8Packed inside).
//
// Prologue: the workgroup quantizes x[t] (CU units at a time) into workgroup memory
// (linear_q8_activations.wgsl, in front of the body) like llama.cpp's
// q8_1 without the sum: per 32-block d = max|x| / 127 and q = round(x / d) as int8, four to a u32
// (xq), d in xd (src/engine/reference/ops.ts quantizeActivationsQ8 is the same arithmetic). Every
// row of the workgroup then reads its activations from there: no extra dispatch, and x is read
// once per workgroup of 2·(WG/TPR)·PPG rows.
//
// Rows: thread group g (TPR lanes) of workgroup w handles the row pairs (w·PPG + k)·(WG/TPR) + g,
// k < PPG (swiglu: gate row f and up row F + f), so the workgroup's rows are contiguous; lane l
// reads units l, l + TPR, … (consecutive 16-byte loads across lanes). Dispatch:
// ceil(pairs / ((WG/TPR)·PPG)) workgroups, folded into (x, y) above maxComputeWorkgroupsPerDimension.
// Lane sums meet in a workgroup-memory tree.


/** Row pairs per thread group (≤ MAX_PPG). */
override PPG: u32 = 4u;
const MAX_PPG: u32 = 4u;
var<workgroup> sums: array<vec2<f32>, MAX_PPG * WG>;

const NO_NORM: u32 = 0xffffffffu;

/**
 * RMSNorm prologue: 1 / sqrt(mean(x[t]²) + eps), summed by the whole workgroup in f32 (every
 * workgroup does it for itself: K floats, cheap next to its rows of weights).
 */
fn norm_scale(t: u32, lid: u32) -> f32 {
  let base = part.x_offset / 4u + t * part.units * 8u;
  var ss = 0.0;
  for (var i = lid; i < part.units * 8u; i += WG) {
    let v = x[base + i];
    ss += dot(v, v);
  }
  sums[lid] = vec2<f32>(ss, 0.0);
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      sums[lid] += sums[lid + stride];
    }
    workgroupBarrier();
  }
  let scale = 1.0 / sqrt(sums[0].x / f32(part.units * 32u) + part.norm_eps);
  workgroupBarrier(); // sums is reused
  return scale;
}

/** Activation vec4 i of token t from element 4·c on: x, or x · scale · norm weight (prologue). */
fn activation(xi: u32, c: u32, scale: f32) -> vec4<f32> {
  let v = x[xi];
  if (part.norm_offset == NO_NORM) {
    return v;
  }
  let o = part.norm_offset + 4u * c;
  return v * scale * vec4<f32>(consts[o], consts[o + 1u], consts[o + 2u], consts[o + 3u]);
}

/** Quantize units [c0, c0 + cu) of token t's activations into xq / xd (uniform control flow). */
fn quantize_chunk(t: u32, c0: u32, cu: u32, lid: u32, scale: f32) {
  let base = part.x_offset / 4u + (t * part.units + c0) * 8u;
  workgroupBarrier(); // the previous chunk's readers are done
  for (var i = lid; i < cu * 8u; i += WG) {
    let a = abs(activation(base + i, c0 * 8u + i, scale));
    xq[i] = bitcast<u32>(max(max(a.x, a.y), max(a.z, a.w)));
  }
  workgroupBarrier();
  for (var b = lid; b < cu; b += WG) {
    var m = 0.0;
    for (var j = 0u; j < 8u; j++) {
      m = max(m, bitcast<f32>(xq[8u * b + j]));
    }
    xd[b] = m / 127.0;
  }
  workgroupBarrier();
  for (var i = lid; i < cu * 8u; i += WG) {
    let d = xd[i / 8u];
    let id = select(0.0, 1.0 / d, d > 0.0);
    xq[i] = pack4xI8(vec4<i32>(round(activation(base + i, c0 * 8u + i, scale) * id)));
  }
  workgroupBarrier();
}

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
  let first = (wid.y * nwg.x + wid.x) * PPG * groups + lid / TPR;

  for (var t = 0u; t < n_tok; t++) {
    var scale = 1.0;
    if (part.norm_offset != NO_NORM) {
      scale = norm_scale(t, lid);
    }
    var acc: array<vec2<f32>, MAX_PPG>;
    for (var k = 0u; k < MAX_PPG; k++) {
      acc[k] = vec2<f32>(0.0); // explicitly per token: SwiftShader did not re-zero a var declared in a loop
    }
    for (var c0 = 0u; c0 < part.units; c0 += CU) {
      let cu = min(CU, part.units - c0);
      quantize_chunk(t, c0, cu, lid, scale);
      for (var k = 0u; k < PPG; k++) {
        // Clamped so that idle groups still read valid addresses (they must reach the barriers).
        let p = min(first + k * groups, n_pairs - 1u);
        let row0 = select(2u * p, p, swiglu);
        let row1 = select(min(2u * p + 1u, part.rows - 1u), p + part.rows, swiglu);
        for (var u = lane; u < cu; u += TPR) {
          acc[k] += unit_dot2(row0, row1, c0 + u, u);
        }
      }
    }
    for (var k = 0u; k < PPG; k++) {
      sums[k * WG + lid] = acc[k];
    }
    workgroupBarrier();
    for (var stride = TPR / 2u; stride > 0u; stride /= 2u) {
      if (lane < stride) {
        for (var k = 0u; k < PPG; k++) {
          sums[k * WG + lid] += sums[k * WG + lid + stride];
        }
      }
      workgroupBarrier();
    }
    if (lane == 0u) {
      for (var k = 0u; k < PPG; k++) {
        let pair = first + k * groups;
        if (pair < n_pairs) {
          let v = sums[k * WG + lid];
          if (swiglu) {
            write_out(t, pair, silu(v.x) * v.y);
          } else if (part.rope_q != 0u) {
            rope_kv_store(t, 2u * pair, v);
          } else {
            write_out(t, 2u * pair, v.x);
            if (2u * pair + 1u < part.rows) {
              write_out(t, 2u * pair + 1u, v.y);
            }
          }
        }
      }
    }
  }
}

/** The word of KV element pair (j, j + 1) at (seq, pos): the layout of shaders/attention.wgsl's header. */
fn kv_pair_index(seq: u32, pos: u32, j: u32) -> u32 {
  return ((seq * part.max_seq + pos) * part.rope_kv + j) / 2u;
}

/**
 * RoPE + KV-cache epilogue of the QKV mat-vec (decode): rows (r, r + 1), r even, are one NORM-RoPE
 * pair of a q or k head: rotated with the token position's (cos, sin); q goes to y, k and v to the
 * caches at (seq, pos) as f16 pairs, as shaders/rope.wgsl does for prefill. r is the part's own
 * row: a QKV weight of mixed types (q4_K q and k beside a q6_K v) is one part per type, each
 * starting at an even row, so the row of [q; k; v] is part.row_start + r.
 */
fn rope_kv_store(t: u32, r: u32, v: vec2<f32>) {
  let at = tok_rows[t];
  let q_dim = part.rope_q;
  let kv_dim = part.rope_kv;
  let g = part.row_start + r;
  var o = v;
  if (g < q_dim + kv_dim) {
    let half = part.head_dim / 2u;
    let c = part.table_offset + 2u * (at.y * half + (g % part.head_dim) / 2u);
    let cs = vec2<f32>(consts[c], consts[c + 1u]);
    o = vec2<f32>(v.x * cs.x - v.y * cs.y, v.x * cs.y + v.y * cs.x);
  }
  if (g < q_dim) {
    write_out(t, r, o.x);
    write_out(t, r + 1u, o.y);
  } else if (g < q_dim + kv_dim) {
    k_cache[kv_pair_index(at.x, at.y, g - q_dim)] = pack2x16float(o);
  } else {
    v_cache[kv_pair_index(at.x, at.y, g - q_dim - kv_dim)] = pack2x16float(o);
  }
}
