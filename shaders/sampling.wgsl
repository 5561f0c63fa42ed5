// Token sampling on the GPU, one workgroup per sequence; only the chosen token id (u32) leaves
// the GPU. It applies the same steps as the CPU `sampleToken` (src/engine/sampling/sampler.ts)
// with the same uniform draw u (computed on the CPU, passed per sequence):
//   T = 0: argmax, first index on ties.
//   else q_i = exp((logit_i − max) / T); top-k keeps the k largest q; top-p keeps the tokens whose
//   preceding mass (sorted descending) is ≤ p · Σkept; the token is the first, in descending
//   order, whose cumulative mass exceeds u · Σkept.
// Sorting 128k values in one workgroup is slow, so every "sorted order" question is answered by a
// bisection on the f32 bit pattern of q (for q ≥ 0 the bits order like the values): "the k-th
// largest q", "the smallest q whose preceding mass is ≤ p·Z", "the q at which the cumulative mass
// crosses u·Z". Each bisection step is one pass over the vocabulary with a workgroup reduction.
// Exact ties between different tokens' q at a cut are resolved by lowest index (the CPU sorts ties
// by id too, so this only differs when a tie straddles the crossing point).
//
// Logits with NaN or ±Inf (corrupt weights) have no meaningful token: the sequence gets
// NON_FINITE (0xffffffff), which the runner turns into EngineError('non-finite'). The test reads the
// exponent bits, since WGSL compilers may assume floats are finite and fold `x != x` to false.
//
// Bindings: 0 uniform { n_seqs: u32, temperature: f32, top_k: u32, top_p: f32 },
//   1 seqs: [n_seqs] vec4<u32> (last_row, len, bitcast<u32>(u), 0), 2 logits: [n_seqs, VOCAB] f32,
//   3 scratch: [n_seqs, VOCAB] f32 (q values, overwritten), 4 tokens: [n_seqs] u32 (written).
// Override: VOCAB. Dispatch: (n_seqs, 1, 1).

override VOCAB: u32;
const WG: u32 = 256u;
const ONE_BITS: u32 = 0x3f800000u; // bits of 1.0, the largest q
const NON_FINITE: u32 = 0xffffffffu; // the token of a sequence whose logits hold NaN or ±Inf
const EXPONENT_BITS: u32 = 0x7f800000u; // all ones: ±Inf or NaN

struct Params {
  n_seqs: u32,
  temperature: f32,
  top_k: u32,
  top_p: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> seqs: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(4) var<storage, read_write> tokens: array<u32>;

var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;
var<workgroup> result_f: f32;
var<workgroup> result_u: u32;

fn sum_all(lid: u32, v: f32) -> f32 {
  red_f[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red_f[lid] += red_f[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    result_f = red_f[0];
  }
  return workgroupUniformLoad(&result_f);
}

fn count_all(lid: u32, v: u32) -> u32 {
  red_u[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red_u[lid] += red_u[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    result_u = red_u[0];
  }
  return workgroupUniformLoad(&result_u);
}

fn min_all(lid: u32, v: u32) -> u32 {
  red_u[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red_u[lid] = min(red_u[lid], red_u[lid + s]);
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    result_u = red_u[0];
  }
  return workgroupUniformLoad(&result_u);
}

fn non_finite(v: f32) -> u32 {
  return select(0u, 1u, (bitcast<u32>(v) & EXPONENT_BITS) == EXPONENT_BITS);
}

// Σ q_i over kept tokens (bits ≥ floor) whose bits are ≥ b (strict: > b when `strict`).
fn mass_from(lid: u32, base: u32, floor: u32, b: u32, strict: bool) -> f32 {
  var acc = 0.0;
  for (var i = lid; i < VOCAB; i += WG) {
    let q = scratch[base + i];
    let bits = bitcast<u32>(q);
    if (bits >= floor && (bits > b || (!strict && bits == b))) {
      acc += q;
    }
  }
  return sum_all(lid, acc);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wg.x;
  if (s >= params.n_seqs) {
    return;
  }
  let base = s * VOCAB;

  // 1. Argmax (first index on ties): each thread scans a strided slice, then a tree of (value, index).
  //    The same pass counts non-finite logits.
  var best_v = logits[base + lid];
  var best_i = lid;
  var bad = non_finite(best_v);
  for (var i = lid + WG; i < VOCAB; i += WG) {
    let v = logits[base + i];
    bad += non_finite(v);
    if (v > best_v) {
      best_v = v;
      best_i = i;
    }
  }
  if (lid >= VOCAB) {
    best_v = -3.0e38;
    best_i = 0xffffffffu;
    bad = 0u;
  }
  red_f[lid] = best_v;
  red_u[lid] = best_i;
  workgroupBarrier();
  for (var st = WG / 2u; st > 0u; st >>= 1u) {
    if (lid < st) {
      let ov = red_f[lid + st];
      let oi = red_u[lid + st];
      if (ov > red_f[lid] || (ov == red_f[lid] && oi < red_u[lid])) {
        red_f[lid] = ov;
        red_u[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    result_f = red_f[0];
    result_u = red_u[0];
  }
  let max_logit = workgroupUniformLoad(&result_f);
  let argmax = workgroupUniformLoad(&result_u);
  if (count_all(lid, bad) > 0u) {
    if (lid == 0u) {
      tokens[s] = NON_FINITE;
    }
    return;
  }
  if (params.temperature == 0.0) {
    if (lid == 0u) {
      tokens[s] = argmax;
    }
    return;
  }

  // 2. Unnormalized probabilities q_i = exp((logit_i − max) / T) ∈ [0, 1].
  let inv_t = 1.0 / params.temperature;
  for (var i = lid; i < VOCAB; i += WG) {
    scratch[base + i] = exp((logits[base + i] - max_logit) * inv_t);
  }
  storageBarrier();
  workgroupBarrier();

  // 3. top-k: floor = bits of the k-th largest q (largest b with count(bits ≥ b) ≥ k).
  var floor = 0u;
  if (params.top_k > 0u && params.top_k < VOCAB) {
    var lo = 0u;
    var hi = ONE_BITS + 1u;
    loop {
      if (hi - lo <= 1u) {
        break;
      }
      let mid = lo + (hi - lo) / 2u;
      var c = 0u;
      for (var i = lid; i < VOCAB; i += WG) {
        c += select(0u, 1u, bitcast<u32>(scratch[base + i]) >= mid);
      }
      if (count_all(lid, c) >= params.top_k) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    floor = lo;
  }

  // 4. top-p: smallest b ≥ floor whose preceding mass Σ(q > b) is ≤ p · Σkept.
  if (params.top_p < 1.0) {
    let limit = params.top_p * mass_from(lid, base, floor, floor, false);
    if (mass_from(lid, base, floor, floor, true) > limit) {
      var lo = floor;
      var hi = ONE_BITS;
      loop {
        if (hi - lo <= 1u) {
          break;
        }
        let mid = lo + (hi - lo) / 2u;
        if (mass_from(lid, base, floor, mid, true) <= limit) {
          hi = mid;
        } else {
          lo = mid;
        }
      }
      floor = hi;
    }
  }

  // 5. Draw: the largest b whose cumulative mass Σ(q ≥ b) exceeds u · Σkept.
  let u = bitcast<f32>(seqs[s].z);
  let goal = u * mass_from(lid, base, floor, floor, false);
  var lo = floor;
  var hi = ONE_BITS + 1u;
  loop {
    if (hi - lo <= 1u) {
      break;
    }
    let mid = lo + (hi - lo) / 2u;
    if (mass_from(lid, base, floor, mid, false) > goal) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  // The token is the lowest index whose q has exactly those bits.
  var first = 0xffffffffu;
  for (var i = lid; i < VOCAB; i += WG) {
    if (bitcast<u32>(scratch[base + i]) == lo && i < first) {
      first = i;
    }
  }
  let token = min_all(lid, first);
  if (lid == 0u) {
    tokens[s] = token;
  }
}
