// Subgroup variant of `matvec`, appended to a linear_<type> kernel (and `enable subgroups;` put in
// front) only on devices with the `subgroups` feature. Same bindings, dispatch and results; the
// lanes of a row pair are summed with subgroupShuffleXor instead of a workgroup-memory tree.
// Assumes subgroups are runs of consecutive local_invocation_index (true of the implementations we
// know; the kernel's self-check runs this entry point on the device to confirm it).

@compute @workgroup_size(WG)
fn matvec_sg(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(subgroup_size) sg_size: u32,
) {
  let n_tok = min(params.x, MAXT);
  let groups = WG / TPR;
  let lane = lid % TPR;
  let swiglu = part.epilogue == 2u;
  let n_pairs = select((part.rows + 1u) / 2u, part.rows, swiglu);
  let pair = (wid.y * nwg.x + wid.x) * groups + lid / TPR;
  let p = min(pair, n_pairs - 1u);
  let row0 = select(2u * p, p, swiglu);
  let row1 = select(min(2u * p + 1u, part.rows - 1u), p + part.rows, swiglu);
  // Lanes of one row pair that share a subgroup: butterfly over runs of `run` lanes.
  let run = min(TPR, sg_size);

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
    for (var off = 1u; off < run; off *= 2u) {
      s0 += subgroupShuffleXor(s0, off);
      s1 += subgroupShuffleXor(s1, off);
    }
    var v0 = s0;
    var v1 = s1;
    if (run < TPR) {
      // Subgroups smaller than TPR: add the TPR / run run totals through workgroup memory.
      partial[lid] = s0;
      partial[WG + lid] = s1;
      workgroupBarrier();
      if (lane == 0u) {
        for (var k = 1u; k < TPR / run; k++) {
          v0 += partial[lid + k * run];
          v1 += partial[WG + lid + k * run];
        }
      }
      workgroupBarrier();
    }
    if (lane == 0u && pair < n_pairs) {
      if (swiglu) {
        write_out(t, pair, silu(v0) * v1);
      } else {
        write_out(t, 2u * pair, v0);
        if (2u * pair + 1u < part.rows) {
          write_out(t, 2u * pair + 1u, v1);
        }
      }
    }
  }
}
