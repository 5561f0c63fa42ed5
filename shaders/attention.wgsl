// Causal attention with GQA over the per-sequence f16 KV cache. Each token row t has (seq, pos) =
// rows[t] and attends to positions 0..pos of its own sequence (so a batch may mix sequences and
// prefill chunks). Query head h reads KV head h / G, G = N_HEADS / N_KV_HEADS. Scores are scaled by
// 1/sqrt(HEAD_DIM); softmax is online (running max m, running sum l); everything accumulates in f32.
//
// ── KV cache layout (the contract of every writer and reader) ───────────────────────────────────
// One k_cache and one v_cache per layer, each `array<u32>`: [batch, MAX_SEQ, N_KV_HEADS, HEAD_DIM/2]
// words; word i of (seq, pos, kv head) holds elements 2i, 2i+1 of that head's post-RoPE key (value)
// as two IEEE halves, element 2i in the low half: pack2x16float(vec2<f32>(x[2i], x[2i + 1])).
// HEAD_DIM is even. The word of element pair (j, j + 1) of the KV row (j even, < N_KV_HEADS·HEAD_DIM)
// of (seq, pos) is
//
//   fn kv_pair_index(seq: u32, pos: u32, j: u32) -> u32 {
//     return ((seq * MAX_SEQ + pos) * N_KV_HEADS * HEAD_DIM + j) / 2u;
//   }
//
// and a writer stores   k_cache[kv_pair_index(seq, pos, j)] = pack2x16float(vec2<f32>(k[j], k[j + 1]));
//                       v_cache[kv_pair_index(seq, pos, j)] = pack2x16float(vec2<f32>(v[j], v[j + 1]));
// (today shaders/rope.wgsl; the fused QKV epilogue must do exactly the same). Only pack2x16float /
// unpack2x16float: no `shader-f16` needed. The CPU reference rounds K and V to f16 (round to nearest
// even) when it stores them, so both see the same cache.
//
// ── How the kernel works ────────────────────────────────────────────────────────────────────────
// One workgroup serves one token row, one KV head and GROUP_HEADS query heads of its GQA group
// (all of them unless GROUP_HEADS < G: then ⌈G / GROUP_HEADS⌉ "chunks" of the group), so each K/V
// load feeds every query head of the group. Positions go in tiles of TILE (≤ 64, so a tile of K fits
// 8 KB of workgroup memory; TILE·(HEAD_DIM/2 | 1) ≤ 2048 words):
//   1. the K tile is copied to workgroup memory with lanes over head_dim (consecutive lanes read
//      consecutive words of a key row: coalesced);
//   2. lanes are split into one segment per query head; each lane scores positions lane,
//      lane + segment, … of the tile; the tile max of each head is a tree over its segment;
//   3. each lane rescales its share of l by e^(m_old − m_new) and turns its scores into e^(s − m_new);
//      the V tile replaces the K tile (coalesced as K);
//   4. each thread owns (head, word) output pairs: o = o·e^(m_old − m_new) + Σ_p e_p · v_p.
//
// Entry points (bindings of each); chunks = ⌈G / GROUP_HEADS⌉:
//   prefill       grid (N_KV_HEADS·chunks, n_tokens): the whole range 0..pos of each token row.
//     0 uniform { n_tokens, n_splits, split_len }, 1 rows: [n_tokens] vec2<u32> (seq, pos),
//     2 qkv: [n_tokens, (H + 2·Hkv)·Dh] f32 (q is the first H·Dh), 3 k_cache, 4 v_cache (u32 words,
//     layout above), 5 out: [n_tokens, H·Dh] f32 (written).
//   decode_split  grid (n_splits, N_KV_HEADS·chunks, n_tokens): flash-decoding; split s covers
//     positions [s·split_len, min((s+1)·split_len, pos+1)). Bindings 0–4 as prefill, 5 partial:
//     [n_tokens, H, n_splits, HEAD_DIM + 2] f32 = unnormalized o, then m, l (written).
//   decode_reduce grid (H, n_tokens): merges the splits: out = Σ e^(m_s−M)·o_s / Σ e^(m_s−M)·l_s.
//     0 uniform, 1 partial (read), 2 out (written).
// Overrides: N_HEADS, N_KV_HEADS, HEAD_DIM (even, ≤ 256), MAX_SEQ, GROUP_HEADS (query heads per
// workgroup: ≤ 8, ≤ G, GROUP_HEADS·HEAD_DIM ≤ 1024; `attentionGroupHeads` in kernels.ts picks it).

override N_HEADS: u32;
override N_KV_HEADS: u32;
override HEAD_DIM: u32;
override MAX_SEQ: u32;
override GROUP_HEADS: u32;
const WG: u32 = 128u;
const MAX_GROUP: u32 = 8u;
const MAX_TILE: u32 = 64u;
const KV_TILE_WORDS: u32 = 2048u; // 8 KB: one tile of K, then of V
const Q_FLOATS: u32 = 1024u; // GROUP_HEADS · HEAD_DIM
const MAX_PAIRS_PER_THREAD: u32 = 4u; // GROUP_HEADS · HEAD_DIM / 2 ≤ 4 · WG
const NEG_BIG: f32 = -1.0e30; // finite "minus infinity": exp(NEG_BIG − m) is 0, never NaN

struct Params {
  n_tokens: u32,
  n_splits: u32,
  split_len: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> rows: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> k_cache: array<u32>;
@group(0) @binding(4) var<storage, read> v_cache: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> q_sh: array<f32, Q_FLOATS>; // [GROUP_HEADS, HEAD_DIM]
var<workgroup> kv_sh: array<u32, KV_TILE_WORDS>; // [TILE, row_stride] f16 pairs
var<workgroup> p_sh: array<f32, MAX_GROUP * MAX_TILE>; // [head, position]: scores, then e^(s − m)
var<workgroup> red: array<f32, WG>;
var<workgroup> corr_sh: array<f32, MAX_GROUP>; // e^(m_old − m_new) of the current tile, per head
var<workgroup> m_sh: array<f32, MAX_GROUP>; // final (m, l) per head
var<workgroup> l_sh: array<f32, MAX_GROUP>;
var<private> acc: array<vec2<f32>, MAX_PAIRS_PER_THREAD>; // output pairs tid + j·WG

fn kv_pair_index(seq: u32, pos: u32, j: u32) -> u32 {
  return ((seq * MAX_SEQ + pos) * N_KV_HEADS * HEAD_DIM + j) / 2u;
}

/// The query heads [g0, g0 + gn) of KV head kvh that workgroup column `x` serves.
struct Group {
  kvh: u32,
  g0: u32,
  gn: u32,
}

fn group_of(x: u32) -> Group {
  let g = N_HEADS / N_KV_HEADS;
  let chunks = (g + GROUP_HEADS - 1u) / GROUP_HEADS;
  let c = x % chunks;
  let g0 = c * GROUP_HEADS;
  return Group(x / chunks, g0, min(GROUP_HEADS, g - g0));
}

// Online softmax of token t, heads gr over positions [start, end) (uniform across the workgroup).
// Leaves the unnormalized output pairs in `acc` (pair o = tid + j·WG is word o % (HEAD_DIM/2) of
// head o / (HEAD_DIM/2)) and each head's (m, l) in m_sh, l_sh.
fn attend(t: u32, gr: Group, start: u32, end: u32, tid: u32) {
  let words = HEAD_DIM / 2u;
  let row_stride = words | 1u; // odd: lanes scoring different positions hit different banks
  let tile = min(MAX_TILE, KV_TILE_WORDS / row_stride);
  var seg_heads = 1u; // a power of two ≥ gn: segments of equal size
  while (seg_heads < gr.gn) {
    seg_heads *= 2u;
  }
  let lanes = WG / seg_heads; // lanes per query head in the scoring phase
  let g = tid / lanes; // this lane's head while scoring (g ≥ gn: idle)
  let lane = tid % lanes;
  let q_dim = N_HEADS * HEAD_DIM;
  let kv_dim = N_KV_HEADS * HEAD_DIM;
  let seq = rows[t].x;
  let kv_col = gr.kvh * HEAD_DIM;
  let scale = 1.0 / sqrt(f32(HEAD_DIM));
  // The group's query heads are consecutive in qkv.
  let q_off = t * (q_dim + 2u * kv_dim) + (gr.kvh * (N_HEADS / N_KV_HEADS) + gr.g0) * HEAD_DIM;
  for (var i = tid; i < gr.gn * HEAD_DIM; i += WG) {
    q_sh[i] = qkv[q_off + i];
  }
  for (var j = 0u; j < MAX_PAIRS_PER_THREAD; j++) {
    acc[j] = vec2<f32>(0.0);
  }
  let n_pairs = gr.gn * words;
  var m = NEG_BIG; // running max of head g (the same in every lane of its segment)
  var l = 0.0; // this lane's share of head g's running sum
  for (var base = start; base < end; base += tile) {
    let n = min(tile, end - base);
    workgroupBarrier(); // q_sh is stored; the previous tile's kv_sh, p_sh, corr_sh are consumed
    for (var i = tid; i < n * words; i += WG) {
      let p = i / words;
      let w = i - p * words;
      kv_sh[p * row_stride + w] = k_cache[kv_pair_index(seq, base + p, kv_col) + w];
    }
    workgroupBarrier();
    var tile_max = NEG_BIG;
    if (g < gr.gn) {
      let q_base = g * HEAD_DIM;
      for (var p = lane; p < n; p += lanes) {
        var dot = 0.0;
        for (var w = 0u; w < words; w++) {
          let k = unpack2x16float(kv_sh[p * row_stride + w]);
          dot += q_sh[q_base + 2u * w] * k.x + q_sh[q_base + 2u * w + 1u] * k.y;
        }
        let s = dot * scale;
        p_sh[g * MAX_TILE + p] = s;
        tile_max = max(tile_max, s);
      }
    }
    red[tid] = tile_max;
    workgroupBarrier();
    for (var stride = lanes / 2u; stride > 0u; stride >>= 1u) {
      if (lane < stride) {
        red[tid] = max(red[tid], red[tid + stride]);
      }
      workgroupBarrier();
    }
    // Past those barriers every score is computed: kv_sh may take the V tile.
    var m_new = m;
    if (g < gr.gn) {
      m_new = max(m, red[g * lanes]);
      let corr = exp(m - m_new);
      var sum = 0.0;
      for (var p = lane; p < n; p += lanes) {
        let e = exp(p_sh[g * MAX_TILE + p] - m_new);
        p_sh[g * MAX_TILE + p] = e;
        sum += e;
      }
      l = l * corr + sum;
      if (lane == 0u) {
        corr_sh[g] = corr;
      }
    }
    m = m_new;
    for (var i = tid; i < n * words; i += WG) {
      let p = i / words;
      let w = i - p * words;
      kv_sh[p * row_stride + w] = v_cache[kv_pair_index(seq, base + p, kv_col) + w];
    }
    workgroupBarrier();
    for (var j = 0u; j < MAX_PAIRS_PER_THREAD; j++) {
      let o = tid + j * WG;
      if (o < n_pairs) {
        let og = o / words;
        let w = o - og * words;
        var a = acc[j] * corr_sh[og];
        for (var p = 0u; p < n; p++) {
          a += p_sh[og * MAX_TILE + p] * unpack2x16float(kv_sh[p * row_stride + w]);
        }
        acc[j] = a;
      }
    }
  }
  // Each head's l is spread over the lanes of its segment: sum them.
  workgroupBarrier();
  red[tid] = l;
  workgroupBarrier();
  for (var stride = lanes / 2u; stride > 0u; stride >>= 1u) {
    if (lane < stride) {
      red[tid] += red[tid + stride];
    }
    workgroupBarrier();
  }
  if (g < gr.gn && lane == 0u) {
    m_sh[g] = m;
    l_sh[g] = red[tid];
  }
  workgroupBarrier();
}

@compute @workgroup_size(WG)
fn prefill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let t = wg.y;
  if (t >= params.n_tokens) {
    return;
  }
  let gr = group_of(wg.x);
  attend(t, gr, 0u, rows[t].y + 1u, tid);
  let words = HEAD_DIM / 2u;
  let first_head = gr.kvh * (N_HEADS / N_KV_HEADS) + gr.g0;
  for (var j = 0u; j < MAX_PAIRS_PER_THREAD; j++) {
    let o = tid + j * WG;
    if (o < gr.gn * words) {
      let og = o / words;
      let w = o - og * words;
      let r = acc[j] / l_sh[og];
      let d = (t * N_HEADS + first_head + og) * HEAD_DIM + 2u * w;
      out[d] = r.x;
      out[d + 1u] = r.y;
    }
  }
}

@compute @workgroup_size(WG)
fn decode_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let sp = wg.x;
  let t = wg.z;
  if (t >= params.n_tokens || sp >= params.n_splits) {
    return;
  }
  let gr = group_of(wg.y);
  let len = rows[t].y + 1u;
  let start = min(sp * params.split_len, len);
  let end = min(start + params.split_len, len);
  attend(t, gr, start, end, tid);
  let words = HEAD_DIM / 2u;
  let stride = HEAD_DIM + 2u;
  let first_head = gr.kvh * (N_HEADS / N_KV_HEADS) + gr.g0;
  for (var j = 0u; j < MAX_PAIRS_PER_THREAD; j++) {
    let o = tid + j * WG;
    if (o < gr.gn * words) {
      let og = o / words;
      let w = o - og * words;
      let d = ((t * N_HEADS + first_head + og) * params.n_splits + sp) * stride + 2u * w;
      out[d] = acc[j].x;
      out[d + 1u] = acc[j].y;
    }
  }
  if (tid < gr.gn) {
    let d = ((t * N_HEADS + first_head + tid) * params.n_splits + sp) * stride + HEAD_DIM;
    out[d] = m_sh[tid];
    out[d + 1u] = l_sh[tid];
  }
}

@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> merged: array<f32>;

@compute @workgroup_size(WG)
fn decode_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wg.x;
  let t = wg.y;
  if (t >= params.n_tokens) {
    return;
  }
  let n = params.n_splits;
  let stride = HEAD_DIM + 2u;
  let first = (t * N_HEADS + h) * n * stride;
  var big_m = NEG_BIG;
  for (var sp = 0u; sp < n; sp++) {
    big_m = max(big_m, partial[first + sp * stride + HEAD_DIM]);
  }
  var big_l = 0.0;
  for (var sp = 0u; sp < n; sp++) {
    let o = first + sp * stride;
    big_l += exp(partial[o + HEAD_DIM] - big_m) * partial[o + HEAD_DIM + 1u];
  }
  for (var d = lid; d < HEAD_DIM; d += WG) {
    var a = 0.0;
    for (var sp = 0u; sp < n; sp++) {
      let o = first + sp * stride;
      a += exp(partial[o + HEAD_DIM] - big_m) * partial[o + d];
    }
    merged[(t * N_HEADS + h) * HEAD_DIM + d] = a / big_l;
  }
}

// ── Prefill as FlashAttention-2: `prefill_flash` ───────────────────────────────────────────────
// grid (⌈n_tokens / FA_TOKENS⌉, N_KV_HEADS·chunks); bindings as `prefill`. One workgroup serves a
// query tile of FA_ROWS = 32 rows: FA_TOKENS = 32 / GROUP_HEADS consecutive token rows × the
// GROUP_HEADS query heads of one group chunk, so every K/V tile is read from memory once per query
// tile (not once per token). Thread tid owns row r = tid / 4 (token r / GROUP_HEADS, head
// r % GROUP_HEADS) and quarter c = tid % 4 of head_dim: its q quarter and output quarter live in
// registers (HEAD_DIM ≤ 128, a multiple of 8). Per tile of FA_KT key positions:
//   1. the K tile goes to workgroup memory, word w of quarter c at w·4 + c (the 4 threads of a row
//      read 4 consecutive words: no bank conflict);
//   2. each thread scores its quarter of q against the tile's keys (partial dot products);
//   3. the V tile replaces K; each thread sums its row's 4 partials, masks positions past its own
//      (causal) or past the sequence, and does the online-softmax step (m, l, o rescaled);
//   4. o += Σ_p e^(s_p − m) · v_p over its quarter.
// Token rows of several sequences (a chunk holds them sequence after sequence) are served run by
// run: each run of one sequence streams that sequence's K/V up to its last position.

const FA_ROWS: u32 = 32u;
const FA_KT: u32 = 16u; // key positions per tile
const FA_MAX_QW: u32 = 16u; // words per quarter row: HEAD_DIM / 8 ≤ 16
override FA_TOKENS: u32 = FA_ROWS / GROUP_HEADS;

var<workgroup> fa_kv: array<u32, FA_KT * 4u * FA_MAX_QW>; // [position][word w][quarter c]
var<workgroup> fa_part: array<f32, 4u * FA_ROWS * FA_KT>; // [quarter][row][position] partial scores
var<workgroup> fa_run: vec3<u32>; // (seq, end row, positions) of the current run

@compute @workgroup_size(WG)
fn prefill_flash(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let gr = group_of(wg.y);
  let t0 = wg.x * FA_TOKENS;
  let t_end = min(t0 + FA_TOKENS, params.n_tokens);
  let r = tid / 4u;
  let c = tid % 4u;
  let t = t0 + r / GROUP_HEADS;
  let hg = r % GROUP_HEADS;
  let valid = r < FA_TOKENS * GROUP_HEADS && t < t_end && hg < gr.gn;
  let words = HEAD_DIM / 2u;
  let qw = HEAD_DIM / 8u; // words per quarter
  let q_dim = N_HEADS * HEAD_DIM;
  let kv_dim = N_KV_HEADS * HEAD_DIM;
  let head = gr.kvh * (N_HEADS / N_KV_HEADS) + gr.g0 + hg;
  let kv_col = gr.kvh * HEAD_DIM;
  let scale = 1.0 / sqrt(f32(HEAD_DIM));
  var q: array<vec2<f32>, FA_MAX_QW>;
  var o: array<vec2<f32>, FA_MAX_QW>;
  var my_pos = 0u;
  if (valid) {
    my_pos = rows[t].y;
    let q_off = t * (q_dim + 2u * kv_dim) + head * HEAD_DIM + c * 2u * qw;
    for (var w = 0u; w < qw; w++) {
      q[w] = vec2<f32>(qkv[q_off + 2u * w], qkv[q_off + 2u * w + 1u]);
      o[w] = vec2<f32>(0.0);
    }
  }
  var m = NEG_BIG;
  var l = 0.0;
  var run0 = t0;
  loop {
    if (run0 >= t_end) {
      break;
    }
    if (tid == 0u) {
      let seq = rows[run0].x;
      var e = run0;
      var last = 0u;
      while (e < t_end && rows[e].x == seq) {
        last = max(last, rows[e].y);
        e++;
      }
      fa_run = vec3<u32>(seq, e, last + 1u);
    }
    let run = workgroupUniformLoad(&fa_run);
    let mine = valid && t >= run0 && t < run.y;
    for (var base = 0u; base < run.z; base += FA_KT) {
      let n = min(FA_KT, run.z - base);
      workgroupBarrier(); // the previous V tile is consumed
      for (var i = tid; i < n * words; i += WG) {
        let p = i / words;
        let j = i - p * words;
        fa_kv[(p * FA_MAX_QW + j % qw) * 4u + j / qw] = k_cache[kv_pair_index(run.x, base + p, kv_col) + j];
      }
      workgroupBarrier();
      for (var p = 0u; p < FA_KT; p++) {
        var s = 0.0;
        if (p < n) {
          for (var w = 0u; w < qw; w++) {
            let k = unpack2x16float(fa_kv[(p * FA_MAX_QW + w) * 4u + c]);
            s += q[w].x * k.x + q[w].y * k.y;
          }
        }
        fa_part[(c * FA_ROWS + r) * FA_KT + p] = s;
      }
      workgroupBarrier(); // partial scores stored, K consumed: V replaces it
      for (var i = tid; i < n * words; i += WG) {
        let p = i / words;
        let j = i - p * words;
        fa_kv[(p * FA_MAX_QW + j % qw) * 4u + j / qw] = v_cache[kv_pair_index(run.x, base + p, kv_col) + j];
      }
      var e: array<f32, FA_KT>;
      var m_new = m;
      for (var p = 0u; p < FA_KT; p++) {
        let s = (fa_part[r * FA_KT + p] + fa_part[(FA_ROWS + r) * FA_KT + p] +
          fa_part[(2u * FA_ROWS + r) * FA_KT + p] + fa_part[(3u * FA_ROWS + r) * FA_KT + p]) * scale;
        let seen = p < n && base + p <= my_pos; // causal: up to the row's own position
        e[p] = select(NEG_BIG, s, seen);
        m_new = max(m_new, e[p]);
      }
      var sum = 0.0;
      for (var p = 0u; p < FA_KT; p++) {
        e[p] = select(0.0, exp(e[p] - m_new), e[p] != NEG_BIG); // masked: exactly 0
        sum += e[p];
      }
      workgroupBarrier(); // the V tile is stored
      if (mine) {
        let corr = exp(m - m_new);
        l = l * corr + sum;
        m = m_new;
        for (var w = 0u; w < qw; w++) {
          var a = o[w] * corr;
          for (var p = 0u; p < n; p++) {
            a += e[p] * unpack2x16float(fa_kv[(p * FA_MAX_QW + w) * 4u + c]);
          }
          o[w] = a;
        }
      }
    }
    run0 = run.y;
  }
  if (valid) {
    let d = (t * N_HEADS + head) * HEAD_DIM + c * 2u * qw;
    for (var w = 0u; w < qw; w++) {
      out[d + 2u * w] = o[w].x / l;
      out[d + 2u * w + 1u] = o[w].y / l;
    }
  }
}
