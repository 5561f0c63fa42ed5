// Token sampling on the GPU in two dispatches; only the chosen token id (u32) leaves the GPU. It
// picks exactly what the CPU `sampleToken` (src/engine/sampling/sampler.ts) picks with the same
// 32-bit draw, following the same rules:
//   order: logit descending, equal logits by lower id (the tie rule);
//   T = 0: the first token in that order (argmax, first index on ties);
//   else q_i = exp((logit_i − max) / T) (exactly 1 at the max); top-k keeps the first k; top-p
//   keeps a token while the mass before it is ≤ p · Σkept (p as the f32 the uniform holds); the
//   token is the first whose cumulative mass exceeds u · Σkept, u = draw / 2^32.
// The two cut comparisons are exact (integer mantissa products), so when the sums are exact (equal
// logits: q = 1, integer sums) CPU and GPU agree for every draw; otherwise the f32 sums differ from
// the CPU's f64 ones by rounding only.
//
// `partials` (dispatch (GROUPS, n_seqs)): each workgroup reads one CHUNK of a sequence's logits once:
//   its max (and first index of the max), a count of NaN/±Inf, Σ exp((l − local max)/T), and its
//   KEEP first tokens in the order (bitonic sort in workgroup memory). Greedy skips sum and sort.
// `pick` (dispatch (n_seqs)): one workgroup per sequence merges the records: NaN/±Inf → NON_FINITE;
//   greedy → the best first candidate; else the global max M, the normaliser Z = Σ_g sum_g ·
//   exp((max_g − M)/T) over all logits (online-softmax rescale), and the merged candidates. Every
//   candidate ranked at or above c* (the best of the full groups' last candidates) is in exact global
//   order: no token left out can rank above c*. Up to LOADED of those are sorted; top-k, top-p and
//   the draw run on their prefix sums. When an answer lies past that prefix (a nucleus wider than the
//   candidates, e.g. equal logits), `pick` falls back to an exact search over all the logits: a
//   bisection over (key, id) per question (~50 passes each, only in that case).
//
// Logits with NaN or ±Inf (corrupt weights) have no meaningful token: the sequence gets
// NON_FINITE (0xffffffff), which the runner turns into EngineError('non-finite'). The test reads the
// exponent bits, since WGSL compilers may assume floats are finite and fold `x != x` to false.
//
// Bindings: 0 uniform { n_seqs: u32, temperature: f32, top_k: u32, top_p: f32 },
//   1 seqs: [n_seqs] vec4<u32> (last_row, len, draw u32, 0) (pick only), 2 logits: [n_seqs, VOCAB] f32,
//   3 scratch: [n_seqs, GROUPS, RECORD] u32 (partials writes, pick reads),
//   4 tokens: [n_seqs] u32 (written by pick only).
// Override: VOCAB. Dispatch: partials (GROUPS = ceil(VOCAB / 1024), n_seqs, 1), then pick (n_seqs, 1, 1).

override VOCAB: u32;
const WG: u32 = 256u;
const CHUNK: u32 = 1024u; // logits per `partials` workgroup, 4 per thread
const PER_THREAD: u32 = 4u;
const KEEP: u32 = 64u; // candidates each `partials` workgroup keeps
const RECORD: u32 = 4u + 2u * KEEP; // u32: max, sum, non-finite count, count | FULL, then (key, id) pairs
const FULL: u32 = 0x80000000u; // in a record's count: the group had more tokens than it kept
const LOADED: u32 = 1024u; // candidates `pick` sorts (= CHUNK: the same sort arrays)
override GROUPS: u32 = (VOCAB + CHUNK - 1u) / CHUNK;
const NONE: u32 = 0xffffffffu;
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
@group(0) @binding(3) var<storage, read_write> scratch: array<u32>;
@group(0) @binding(4) var<storage, read_write> tokens: array<u32>;

var<workgroup> sort_key: array<u32, CHUNK>;
var<workgroup> sort_id: array<u32, CHUNK>;
var<workgroup> prefix: array<f32, LOADED>;
var<workgroup> red_k: array<u32, WG>;
var<workgroup> red_i: array<u32, WG>;
var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_c: array<u32, WG>;
var<workgroup> result: Acc;
var<workgroup> fill: atomic<u32>;

// ---- order ----------------------------------------------------------------------------------

// An unsigned key that orders like the logit (finite logits only; −0 and +0 are the same logit).
fn key_of(l: f32) -> u32 {
  let b = select(bitcast<u32>(l), 0u, l == 0.0);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn logit_of(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// Token (ka, ia) comes strictly before (kb, ib): higher logit, or the same logit and a lower id.
fn before(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
  return ka > kb || (ka == kb && ia < ib);
}

fn at_or_before(a: vec2<u32>, b: vec2<u32>) -> bool {
  return a.x > b.x || (a.x == b.x && a.y <= b.y);
}

fn non_finite(v: f32) -> u32 {
  return select(0u, 1u, (bitcast<u32>(v) & EXPONENT_BITS) == EXPONENT_BITS);
}

// q = exp((l − m)/T), exactly 1 at the max (exp(0) need not be exact on every GPU).
fn weight(l: f32, m: f32, inv_t: f32) -> f32 {
  return select(exp((l - m) * inv_t), 1.0, l == m);
}

// ---- exact comparisons: a > p·t and a > (draw / 2^32)·t for f32 a, p, t ≥ 0 ------------------

// x = mantissa · 2^exponent, both integers, for finite x ≥ 0.
fn mantissa(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select((b & 0x7fffffu) | 0x800000u, b & 0x7fffffu, ((b >> 23u) & 0xffu) == 0u);
}

fn exponent(x: f32) -> i32 {
  let e = i32((bitcast<u32>(x) >> 23u) & 0xffu);
  return select(e - 150, -149, e == 0);
}

// The 64-bit product a·b as (low word, high word).
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
  let a0 = a & 0xffffu;
  let a1 = a >> 16u;
  let b0 = b & 0xffffu;
  let b1 = b >> 16u;
  let p00 = a0 * b0;
  let p01 = a0 * b1;
  let p10 = a1 * b0;
  let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
  return vec2<u32>((p00 & 0xffffu) | (mid << 16u), a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u));
}

// a · 2^ea > r · 2^er, for a mantissa a < 2^24 and a 64-bit r.
fn greater(a: u32, ea: i32, r: vec2<u32>, er: i32) -> bool {
  if (a == 0u) {
    return false;
  }
  if (r.x == 0u && r.y == 0u) {
    return true;
  }
  let k = ea - er;
  if (k >= 0) {
    if (32 - i32(countLeadingZeros(a)) + k > 64) {
      return true;
    }
    let n = u32(k);
    var s = vec2<u32>(a, 0u);
    if (n >= 32u) {
      s = vec2<u32>(0u, a << (n - 32u));
    } else if (n > 0u) {
      s = vec2<u32>(a << n, a >> (32u - n));
    }
    return s.y > r.y || (s.y == r.y && s.x > r.x);
  }
  let n = u32(-k);
  if (n >= 64u) {
    return true; // r / 2^n < 1 ≤ a
  }
  var q = r;
  if (n >= 32u) {
    q = vec2<u32>(r.y >> (n - 32u), 0u);
  } else if (n > 0u) {
    q = vec2<u32>((r.x >> n) | (r.y << (32u - n)), r.y >> n);
  }
  // For an integer a: a > r / 2^n exactly when a > floor(r / 2^n).
  return q.y == 0u && a > q.x;
}

// a > p · t: the top-p cut (the token whose preceding mass a exceeds p·Σ is not kept).
fn exceeds_share(a: f32, p: f32, t: f32) -> bool {
  return greater(mantissa(a), exponent(a), mul_wide(mantissa(p), mantissa(t)), exponent(p) + exponent(t));
}

// a > (draw / 2^32) · t: the draw's crossing.
fn exceeds_draw(a: f32, draw: u32, t: f32) -> bool {
  return greater(mantissa(a), exponent(a), mul_wide(draw, mantissa(t)), exponent(t) - 32);
}

// ---- workgroup reduction -------------------------------------------------------------------------
// One reduction for everything (every call site is a copy of its barrier loop, and some compilers
// take seconds per copy): the first (k, i) in the order, a sum f and a count c. With inv_t > 0, f
// is a sum of weights relative to logit_of(k), rescaled to the winner's logit as it goes (the
// online-softmax merge); a side whose k wins keeps its f exactly.

struct Acc {
  k: u32,
  i: u32,
  f: f32,
  c: u32,
}

fn rescaled(f: f32, k: u32, winner: u32, inv_t: f32) -> f32 {
  return select(f * exp((logit_of(k) - logit_of(winner)) * inv_t), f, k == winner || inv_t == 0.0 || f == 0.0);
}

fn reduce(lid: u32, a: Acc, inv_t: f32) -> Acc {
  red_k[lid] = a.k;
  red_i[lid] = a.i;
  red_f[lid] = a.f;
  red_c[lid] = a.c;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let ok = red_k[lid + s];
      let oi = red_i[lid + s];
      let mk = red_k[lid];
      let take = before(ok, oi, mk, red_i[lid]);
      let wk = select(mk, ok, take);
      red_f[lid] = rescaled(red_f[lid], mk, wk, inv_t) + rescaled(red_f[lid + s], ok, wk, inv_t);
      red_c[lid] += red_c[lid + s];
      if (take) {
        red_k[lid] = ok;
        red_i[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    result = Acc(red_k[0], red_i[0], red_f[0], red_c[0]);
  }
  return workgroupUniformLoad(&result);
}

// Sorts sort_key/sort_id (CHUNK entries) into the order: bitonic, in workgroup memory.
fn sort_candidates(lid: u32) {
  for (var size = 2u; size <= CHUNK; size <<= 1u) {
    for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
      for (var t = lid; t < CHUNK / 2u; t += WG) {
        let a = 2u * stride * (t / stride) + t % stride;
        let b = a + stride;
        let ascending = (a & size) == 0u;
        let ka = sort_key[a];
        let ia = sort_id[a];
        let kb = sort_key[b];
        let ib = sort_id[b];
        if (before(kb, ib, ka, ia) == ascending) {
          sort_key[a] = kb;
          sort_id[a] = ib;
          sort_key[b] = ka;
          sort_id[b] = ia;
        }
      }
      workgroupBarrier();
    }
  }
}

// ---- pass 1 --------------------------------------------------------------------------------------

@compute @workgroup_size(WG)
fn partials(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wg.y;
  if (s >= params.n_seqs) {
    return;
  }
  let start = wg.x * CHUNK;
  let n = min(CHUNK, VOCAB - start);
  let base = s * VOCAB + start;
  let rec = (s * GROUPS + wg.x) * RECORD;

  // The slice goes into workgroup memory as keys (a private array indexed in a loop compiles
  // slowly on some drivers); logit_of gives the logits back exactly.
  var best_k = 0u;
  var best_i = NONE;
  var bad = 0u;
  for (var j = 0u; j < PER_THREAD; j++) {
    let i = lid + j * WG;
    if (i < n) {
      let l = logits[base + i];
      bad += non_finite(l);
      let k = key_of(l);
      sort_key[i] = k;
      sort_id[i] = i;
      if (before(k, i, best_k, best_i)) {
        best_k = k;
        best_i = i;
      }
    } else {
      sort_key[i] = 0u; // finite logits have keys > 0: padding sorts last
      sort_id[i] = NONE;
    }
  }
  // Each thread's Σ weight relative to its own max; the reduction rescales to the slice's max.
  let inv_t = select(1.0 / params.temperature, 0.0, params.temperature == 0.0);
  var acc = 0.0;
  if (inv_t > 0.0 && bad == 0u) {
    for (var i = lid; i < n; i += WG) {
      acc += weight(logit_of(sort_key[i]), logit_of(best_k), inv_t); // this thread's own writes
    }
  }
  let r = reduce(lid, Acc(best_k, best_i, acc, bad), inv_t);
  if (r.c > 0u) {
    if (lid == 0u) {
      scratch[rec + 2u] = 1u;
      scratch[rec + 3u] = 0u;
    }
    return;
  }
  let best = vec2<u32>(r.k, r.i);
  let local_max = logit_of(best.x);
  if (params.temperature == 0.0) {
    if (lid == 0u) {
      scratch[rec] = bitcast<u32>(local_max);
      scratch[rec + 1u] = 0u;
      scratch[rec + 2u] = 0u;
      scratch[rec + 3u] = 1u;
      scratch[rec + 4u] = best.x;
      scratch[rec + 5u] = start + best.y;
    }
    return;
  }

  let sum = r.f;
  sort_candidates(lid);
  let count = min(KEEP, n);
  for (var j = lid; j < count; j += WG) {
    scratch[rec + 4u + 2u * j] = sort_key[j];
    scratch[rec + 5u + 2u * j] = start + sort_id[j];
  }
  if (lid == 0u) {
    scratch[rec] = bitcast<u32>(local_max);
    scratch[rec + 1u] = bitcast<u32>(sum);
    scratch[rec + 2u] = 0u;
    scratch[rec + 3u] = count | select(0u, FULL, n > KEEP);
  }
}

// ---- pass 2 --------------------------------------------------------------------------------------

struct Prefix {
  mass: f32,
  count: u32,
}

// Count and mass of the tokens at or before (b, x) in the order, over all logits of a sequence.
fn through(lid: u32, base: u32, b: u32, x: u32, m: f32, inv_t: f32) -> Prefix {
  var mass = 0.0;
  var count = 0u;
  for (var i = lid; i < VOCAB; i += WG) {
    let l = logits[base + i];
    let k = key_of(l);
    if (k > b || (k == b && i <= x)) {
      mass += weight(l, m, inv_t);
      count += 1u;
    }
  }
  let r = reduce(lid, Acc(0u, 0u, mass, count), 0.0);
  return Prefix(r.f, r.c);
}

const BY_COUNT: u32 = 0u; // count ≥ goal
const BY_SHARE: u32 = 1u; // mass > p · t
const BY_DRAW: u32 = 2u; // mass > (draw / 2^32) · t

fn holds(kind: u32, cm: Prefix, goal: u32, p: f32, t: f32) -> bool {
  if (kind == BY_COUNT) {
    return cm.count >= goal;
  }
  if (kind == BY_SHARE) {
    return exceeds_share(cm.mass, p, t);
  }
  return exceeds_draw(cm.mass, goal, t);
}

// The first token (key, id) in the order whose prefix (through it) satisfies the predicate, or
// (0, NONE) if even all tokens do not. One pass over the logits per bisection step: the largest key
// b whose run (every token with key ≥ b) satisfies it, then the smallest id in that run. Written
// as one loop with a single call of `through` (compilers inline every call site).
fn find_first(lid: u32, base: u32, m: f32, inv_t: f32, kind: u32, goal: u32, p: f32, t: f32) -> vec2<u32> {
  var lo = 0u; // keys: lo satisfies, hi does not
  var hi = NONE;
  var xl = 0u; // ids: x + 1 in (xl, xh]
  var xh = VOCAB;
  var phase = 0u; // 0: all tokens, 1: the top key, 2: keys, 3: ids
  loop {
    var b = 0u;
    var x = NONE;
    if (phase == 1u) {
      b = NONE;
    } else if (phase == 2u) {
      if (hi - lo <= 1u) {
        phase = 3u;
        continue;
      }
      b = lo + (hi - lo) / 2u;
    } else if (phase == 3u) {
      if (xh - xl <= 1u) {
        break;
      }
      b = lo;
      x = xl + (xh - xl) / 2u - 1u;
    }
    let ok = holds(kind, through(lid, base, b, x, m, inv_t), goal, p, t);
    if (phase == 0u) {
      if (!ok) {
        return vec2<u32>(0u, NONE);
      }
      phase = 1u;
    } else if (phase == 1u) {
      if (ok) {
        lo = NONE;
        phase = 3u;
      } else {
        phase = 2u;
      }
    } else if (phase == 2u) {
      if (ok) {
        lo = b;
      } else {
        hi = b;
      }
    } else if (ok) {
      xh = x + 1u;
    } else {
      xl = x + 1u;
    }
  }
  return vec2<u32>(lo, xh - 1u);
}

// The exact answer from all the logits, for when the candidates do not reach it. Stages: 0 top-k
// (the keep_k-th token), 1 top-p (the first whose prefix exceeds p · Σ), 2 the draw, 3 the last
// token of all (a draw past the rounded sum with every token kept).
fn pick_exact(lid: u32, base: u32, m: f32, inv_t: f32, keep_k: u32, draw: u32) -> u32 {
  var last = vec2<u32>(0u, NONE); // the last kept token; NONE: every token
  var mass = through(lid, base, 0u, NONE, m, inv_t).mass; // of the kept tokens
  for (var stage = 0u; stage < 4u; stage++) {
    var kind = BY_COUNT;
    var goal = keep_k;
    var p = 0.0;
    if (stage == 0u && keep_k >= VOCAB) {
      continue;
    }
    if (stage == 1u) {
      if (params.top_p >= 1.0) {
        continue;
      }
      kind = BY_SHARE;
      p = params.top_p;
    }
    if (stage == 2u) {
      kind = BY_DRAW;
      goal = draw;
    }
    if (stage == 3u) {
      if (last.y != NONE) {
        break;
      }
      goal = VOCAB;
    }
    let found = find_first(lid, base, m, inv_t, kind, goal, p, mass);
    if (found.y != NONE && (last.y == NONE || at_or_before(found, last))) {
      if (stage == 2u) {
        return found.y;
      }
      last = found;
      if (stage < 2u) {
        mass = through(lid, base, last.x, last.y, m, inv_t).mass;
      }
    }
  }
  return last.y;
}

// The candidates at or before c* (hence in exact global order) with a key above `floor`.
fn count_loaded(lid: u32, recs: u32, floor: u32, cstar: vec2<u32>) -> u32 {
  var c = 0u;
  for (var t = lid; t < GROUPS * KEEP; t += WG) {
    let r = recs + (t / KEEP) * RECORD;
    let j = t % KEEP;
    if (j < (scratch[r + 3u] & ~FULL)) {
      let k = scratch[r + 4u + 2u * j];
      let i = scratch[r + 5u + 2u * j];
      c += select(0u, 1u, k > floor && at_or_before(vec2<u32>(k, i), cstar));
    }
  }
  return reduce(lid, Acc(0u, 0u, 0.0, c), 0.0).c;
}

// Inclusive prefix sum P(i) of the sorted candidates' weights (P(i) = prefix[i]).
fn load_prefix(lid: u32, i: u32) -> f32 {
  return workgroupUniformLoad(&prefix[i]);
}

@compute @workgroup_size(WG)
fn pick(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wg.x;
  if (s >= params.n_seqs) {
    return;
  }
  let recs = s * GROUPS * RECORD;

  let inv_t = select(1.0 / params.temperature, 0.0, params.temperature == 0.0);
  // Stage 0: the best first candidate (argmax), the NaN/Inf count and Z = Σ over all logits
  // (each group's sum, relative to its max, rescaled to the global max by the reduction).
  // Stage 1: c*, the best last candidate of a group that left tokens out ((0, NONE) if none did:
  // then every token is a candidate).
  var best = vec2<u32>(0u, NONE);
  var total_all = 0.0;
  var cstar = vec2<u32>(0u, NONE);
  for (var stage = 0u; stage < 2u; stage++) {
    var a = Acc(0u, NONE, 0.0, 0u);
    for (var g = lid; g < GROUPS; g += WG) {
      let r = recs + g * RECORD;
      var k = scratch[r + 4u];
      var i = scratch[r + 5u];
      var f = bitcast<f32>(scratch[r + 1u]);
      let c = scratch[r + 3u];
      if (stage == 1u) {
        f = 0.0;
        let at = r + 4u + 2u * ((c & ~FULL) - 1u);
        k = select(0u, scratch[at], (c & FULL) != 0u);
        i = select(NONE, scratch[at + 1u], (c & FULL) != 0u);
      }
      if (before(k, i, a.k, a.i)) {
        a.f = rescaled(a.f, a.k, k, inv_t) + f;
        a.k = k;
        a.i = i;
      } else {
        a.f += rescaled(f, k, a.k, inv_t);
      }
      a.c += scratch[r + 2u];
    }
    let r = reduce(lid, a, select(0.0, inv_t, stage == 0u));
    if (stage == 0u) {
      if (r.c > 0u) {
        if (lid == 0u) {
          tokens[s] = NON_FINITE;
        }
        return;
      }
      if (inv_t == 0.0) {
        if (lid == 0u) {
          tokens[s] = r.i;
        }
        return;
      }
      best = vec2<u32>(r.k, r.i);
      total_all = r.f;
    } else {
      cstar = vec2<u32>(r.k, r.i);
    }
  }
  let m = logit_of(best.x);
  let draw = seqs[s].z;

  // The safe candidates (at or before c*): exact global order. Keep those with key > floor, where
  // floor is the smallest key that leaves at most LOADED of them.
  var floor = 0u;
  var loaded = count_loaded(lid, recs, floor, cstar);
  if (loaded > LOADED) {
    var lo = 0u; // more than LOADED above lo
    var hi = NONE; // at most LOADED above hi
    loop {
      if (hi - lo <= 1u) {
        break;
      }
      let mid = lo + (hi - lo) / 2u;
      let above = count_loaded(lid, recs, mid, cstar);
      if (above <= LOADED) {
        hi = mid;
        loaded = above;
      } else {
        lo = mid;
      }
    }
    floor = hi;
  }

  // Load and sort them (padding sorts last).
  for (var j = lid; j < LOADED; j += WG) {
    sort_key[j] = 0u;
    sort_id[j] = NONE;
  }
  if (lid == 0u) {
    atomicStore(&fill, 0u);
  }
  workgroupBarrier();
  for (var t = lid; t < GROUPS * KEEP; t += WG) {
    let r = recs + (t / KEEP) * RECORD;
    let j = t % KEEP;
    if (j < (scratch[r + 3u] & ~FULL)) {
      let k = scratch[r + 4u + 2u * j];
      let i = scratch[r + 5u + 2u * j];
      if (k > floor && at_or_before(vec2<u32>(k, i), cstar)) {
        let slot = atomicAdd(&fill, 1u);
        sort_key[slot] = k;
        sort_id[slot] = i;
      }
    }
  }
  workgroupBarrier();
  sort_candidates(lid);

  // Inclusive prefix sums: 4 consecutive per thread, then a scan of the thread totals.
  var run = 0.0;
  for (var j = 0u; j < PER_THREAD; j++) {
    let at = lid * PER_THREAD + j;
    if (at < loaded) {
      run += weight(logit_of(sort_key[at]), m, inv_t);
    }
    prefix[at] = run;
  }
  red_f[lid] = run;
  workgroupBarrier();
  for (var off = 1u; off < WG; off <<= 1u) {
    let add = select(0.0, red_f[max(lid, off) - off], lid >= off);
    workgroupBarrier();
    red_f[lid] += add;
    workgroupBarrier();
  }
  let offset = select(0.0, red_f[max(lid, 1u) - 1u], lid > 0u);
  for (var j = 0u; j < PER_THREAD; j++) {
    prefix[lid * PER_THREAD + j] += offset;
  }
  workgroupBarrier();

  // top-k, top-p and the draw on the prefix, while the answer lies inside it.
  var keep_k = VOCAB;
  if (params.top_k > 0u && params.top_k < VOCAB) {
    keep_k = params.top_k;
  }
  var fast = true;
  var total = total_all;
  if (keep_k <= loaded) {
    total = load_prefix(lid, keep_k - 1u);
  } else if (keep_k < VOCAB) {
    fast = false;
  }
  var keep = keep_k;
  if (fast && params.top_p < 1.0) {
    // The first position (< keep_k) whose preceding mass exceeds p · total is the first dropped;
    // position i needs P(i − 1), known up to i = loaded.
    let end = min(keep_k, loaded + 1u);
    var cut = NONE;
    for (var i = lid + 1u; i < end; i += WG) {
      if (exceeds_share(prefix[i - 1u], params.top_p, total)) {
        cut = min(cut, i);
      }
    }
    cut = reduce(lid, Acc(1u, cut, 0.0, 0u), 0.0).i; // the lowest position
    if (cut != NONE) {
      keep = cut;
    } else if (keep_k > loaded) {
      fast = false; // the cut lies past the loaded candidates
    }
  }
  var token = NONE;
  if (fast) {
    var kept = total_all;
    if (keep <= loaded) {
      kept = load_prefix(lid, keep - 1u);
    }
    let end = min(keep, loaded);
    var hit = NONE;
    for (var i = lid; i < end; i += WG) {
      if (exceeds_draw(prefix[i], draw, kept)) {
        hit = min(hit, i);
      }
    }
    hit = reduce(lid, Acc(1u, hit, 0.0, 0u), 0.0).i;
    if (hit != NONE) {
      token = workgroupUniformLoad(&sort_id[hit]);
    } else if (keep <= loaded) {
      token = workgroupUniformLoad(&sort_id[keep - 1u]); // u · Σ ≥ the rounded sum: the last kept
    } else {
      fast = false;
    }
  }
  if (!fast) {
    token = pick_exact(lid, s * VOCAB, m, inv_t, keep_k, draw);
  }
  if (lid == 0u) {
    tokens[s] = token;
  }
}
