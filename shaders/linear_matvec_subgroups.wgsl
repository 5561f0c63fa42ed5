// Subgroup variant of `matvec`, appended to a float linear_<type> kernel (and `enable subgroups;`
// put in front) only on devices with the `subgroups` feature. Same bindings, dispatch, loop
// (`row_pair_of`, `lane_sums`, `write_pair` of linear_matvec_float.wgsl) and results; only the
// reduction differs: the lanes of a row pair are summed with subgroupShuffleXor instead of a
// workgroup-memory tree. Assumes subgroups are runs of consecutive local_invocation_index (true of
// the implementations we know; the kernel's self-check runs this entry point on the device).

@compute @workgroup_size(WG)
fn matvec_sg(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(subgroup_size) sg_size: u32,
) {
  let rp = row_pair_of(lid, wid, nwg);
  let n_tok = min(params.x, MAXT);
  // Lanes of one row pair that share a subgroup: butterfly over runs of `run` lanes.
  let run = min(TPR, sg_size);
  for (var t = 0u; t < n_tok; t++) {
    var v = lane_sums(rp, t);
    for (var off = 1u; off < run; off *= 2u) {
      v.x += subgroupShuffleXor(v.x, off);
      v.y += subgroupShuffleXor(v.y, off);
    }
    if (run < TPR) {
      // Subgroups smaller than TPR: add the TPR / run run totals through workgroup memory.
      partial[lid] = v.x;
      partial[WG + lid] = v.y;
      workgroupBarrier();
      if (rp.lane == 0u) {
        for (var k = 1u; k < TPR / run; k++) {
          v += vec2(partial[lid + k * run], partial[WG + lid + k * run]);
        }
      }
      workgroupBarrier();
    }
    if (rp.lane == 0u) {
      write_pair(rp, t, v);
    }
  }
}
