// The float mat-vec (f16, bf16, f32 weights), appended to linear_body.wgsl.

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
      let w0 = load_unit(row0, u);
      let w1 = load_unit(row1, u);
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

