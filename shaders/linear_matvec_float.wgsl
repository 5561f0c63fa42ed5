// The float mat-vec (f16, bf16, f32 weights), appended to linear_body.wgsl.

// ---------------------------------------------------------------------------------------------
// Decode: each group of TPR threads owns a row pair (swiglu: gate row f and up row F + f) and
// strides over the units of K; each x unit is loaded once and used for both rows. Tokens are done
// one after another (n_tokens ≤ MAXT): for decode (one token) nothing is repeated, for a few tokens
// the weight units are re-read from cache.
//
// The loop is written once (`row_pair_of`, `lane_sums`, `write_pair`); the entry points differ only
// in how the TPR lane sums of a pair meet: `matvec` below through a workgroup-memory tree,
// `matvec_sg` (linear_matvec_subgroups.wgsl, appended on devices with subgroups) by shuffles.
// ---------------------------------------------------------------------------------------------

var<workgroup> partial: array<f32, 2u * WG>; // [row of the pair][lid]

/** The row pair a lane works on: its two weight rows and where the results go. */
struct RowPair {
  pair: u32,    // index of the pair (may be ≥ n_pairs for the idle groups of the last workgroup)
  n_pairs: u32,
  row0: u32,    // weight rows read (clamped, so idle groups still load valid addresses)
  row1: u32,
  lane: u32,    // 0 … TPR-1 within the pair's group
  swiglu: bool,
}

fn row_pair_of(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> RowPair {
  let swiglu = part.epilogue == 2u;
  let n_pairs = select((part.rows + 1u) / 2u, part.rows, swiglu);
  // Workgroups beyond maxComputeWorkgroupsPerDimension are folded into y.
  let pair = (wid.y * nwg.x + wid.x) * (WG / TPR) + lid / TPR;
  // Clamp so that inactive groups still load valid addresses (they must reach the barriers).
  let p = min(pair, n_pairs - 1u);
  let row0 = select(2u * p, p, swiglu);
  let row1 = select(min(2u * p + 1u, part.rows - 1u), p + part.rows, swiglu);
  return RowPair(pair, n_pairs, row0, row1, lid % TPR, swiglu);
}

/** This lane's share of token t's dot products with rows row0 and row1 (lanes stride over units). */
fn lane_sums(rp: RowPair, t: u32) -> vec2<f32> {
  let xt0 = part.x_offset / 4u + t * part.units * 8u;
  var s0 = 0.0;
  var s1 = 0.0;
  for (var u = rp.lane; u < part.units; u += TPR) {
    let w0 = load_unit(rp.row0, u);
    let w1 = load_unit(rp.row1, u);
    for (var i = 0u; i < 8u; i++) {
      let xv = x[xt0 + u * 8u + i];
      s0 += dot(w0[i], xv);
      s1 += dot(w1[i], xv);
    }
  }
  return vec2(s0, s1);
}

/** Token t's finished sums v of pair rp through the epilogue (called by lane 0 of the pair). */
fn write_pair(rp: RowPair, t: u32, v: vec2<f32>) {
  if (rp.pair >= rp.n_pairs) {
    return;
  }
  if (rp.swiglu) {
    write_out(t, rp.pair, silu(v.x) * v.y);
  } else {
    write_out(t, 2u * rp.pair, v.x);
    if (2u * rp.pair + 1u < part.rows) {
      write_out(t, 2u * rp.pair + 1u, v.y);
    }
  }
}

@compute @workgroup_size(WG)
fn matvec(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let rp = row_pair_of(lid, wid, nwg);
  let n_tok = min(params.x, MAXT);
  for (var t = 0u; t < n_tok; t++) {
    let s = lane_sums(rp, t);
    partial[lid] = s.x;
    partial[WG + lid] = s.y;
    workgroupBarrier();
    for (var stride = TPR / 2u; stride > 0u; stride /= 2u) {
      if (rp.lane < stride) {
        partial[lid] += partial[lid + stride];
        partial[WG + lid] += partial[WG + lid + stride];
      }
      workgroupBarrier();
    }
    if (rp.lane == 0u) {
      write_pair(rp, t, vec2(partial[lid], partial[WG + lid]));
    }
    workgroupBarrier(); // partial is reused by the next token
  }
}
