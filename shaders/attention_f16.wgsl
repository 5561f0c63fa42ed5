// ── `prefill_flash_f16`: the FlashAttention-2 prefill with packed f16 arithmetic ───────────────
// Appended to shaders/attention.wgsl (its bindings, overrides, workgroup tiles, group_of and
// kv_pair_index; grid and bindings exactly as `prefill_flash`), behind a prelude that
// attention_f16.ts puts first:
//   on a device with `shader-f16`:  enable f16;  alias half = f16;  half2_of(w) = bitcast<vec2<f16>>(w)
//   elsewhere (the self-check only): alias half = f32;  half2_of(w) = unpack2x16float(w)
// so the same text runs — and its logic is checked — where f16 is missing.
// What is f16 (two lanes per instruction on GPUs with f16 ALUs) and what stays f32:
//   - q is scaled by 1/sqrt(HEAD_DIM) in f32 and held as f16 pairs (one rounding, ≤ 2^-11 relative);
//   - a score's products are f16: dot(q pair, K pair) per cache word, the word's dot then added to
//     the thread's f32 partial score (no f16 sum longer than two products);
//   - per K/V tile (≤ FA_KT = 16 positions) Σ e_p · v_p is summed in f16 (e_p ≤ 1 rounded to f16),
//     then added to the f32 output with the online-softmax rescale;
//   - m, l, the partial-score sums, the rescale and the division stay f32.
// The K/V cache words are f16 already: they are reinterpreted, not converted.

@compute @workgroup_size(WG)
fn prefill_flash_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
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
  var q: array<vec2<half>, FA_MAX_QW>; // this thread's quarter of q · scale
  var o: array<vec2<f32>, FA_MAX_QW>;
  var my_pos = 0u;
  if (valid) {
    my_pos = rows[t].y;
    let q_off = t * (q_dim + 2u * kv_dim) + head * HEAD_DIM + c * 2u * qw;
    for (var w = 0u; w < qw; w++) {
      q[w] = vec2<half>(vec2<f32>(qkv[q_off + 2u * w], qkv[q_off + 2u * w + 1u]) * scale);
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
            s += f32(dot(q[w], half2_of(fa_kv[(p * FA_MAX_QW + w) * 4u + c])));
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
        let s = fa_part[r * FA_KT + p] + fa_part[(FA_ROWS + r) * FA_KT + p] +
          fa_part[(2u * FA_ROWS + r) * FA_KT + p] + fa_part[(3u * FA_ROWS + r) * FA_KT + p];
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
          var a = vec2<half>(0.0); // this tile's Σ e·v: ≤ 16 terms, each e ≤ 1
          for (var p = 0u; p < n; p++) {
            a += half(e[p]) * half2_of(fa_kv[(p * FA_MAX_QW + w) * 4u + c]);
          }
          o[w] = o[w] * corr + vec2<f32>(a);
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
