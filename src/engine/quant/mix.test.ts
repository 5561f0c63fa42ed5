import { describe, expect, it } from 'vitest';
import { GgmlType } from '../gguf/types';
import { kQuantTensorType, moreBitsLayer } from './mix';

describe("llama-quantize's K-quant mixes", () => {
  it('use_more_bits: first and last eighth, every third between (32 layers as in an 8B)', () => {
    const layers = Array.from({ length: 32 }, (_, i) => i).filter((i) => moreBitsLayer(i, 32));
    expect(layers).toEqual([0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
    expect([0, 1].map((i) => moreBitsLayer(i, 2))).toEqual([false, true]);
  });

  it('Q4_K_M of a 2-layer model: q4_K, q6_K head, q6_K attn_v and ffn_down in layer 1', () => {
    const t = (name: string, cols = 256) => kQuantTensorType('Q4_K_M', name, cols, 2, false);
    expect(t('token_embd.weight')).toBe(GgmlType.Q4_K);
    expect(t('output.weight')).toBe(GgmlType.Q6_K);
    expect(t('blk.0.attn_v.weight')).toBe(GgmlType.Q4_K);
    expect(t('blk.1.attn_v.weight')).toBe(GgmlType.Q6_K);
    expect(t('blk.1.ffn_down.weight', 512)).toBe(GgmlType.Q6_K);
    expect(t('blk.1.attn_q.weight')).toBe(GgmlType.Q4_K);
    // Rows that are not whole 256-blocks fall back (q4_K → q5_0, q6_K → q8_0).
    expect(t('blk.0.ffn_down.weight', 288)).toBe(GgmlType.Q5_0);
    expect(t('blk.1.ffn_down.weight', 288)).toBe(GgmlType.Q8_0);
  });

  it('Q5_K_M tied: the embedding is the head (q6_K); Q4_K_S: q5_K attn_v; Q5_K_S falls back to q5_1', () => {
    expect(kQuantTensorType('Q5_K_M', 'token_embd.weight', 256, 2, true)).toBe(GgmlType.Q6_K);
    expect(kQuantTensorType('Q5_K_M', 'blk.0.ffn_up.weight', 256, 2, true)).toBe(GgmlType.Q5_K);
    expect(kQuantTensorType('Q4_K_S', 'blk.1.attn_v.weight', 256, 2, false)).toBe(GgmlType.Q5_K);
    expect(kQuantTensorType('Q4_K_S', 'blk.5.attn_v.weight', 256, 32, false)).toBe(GgmlType.Q4_K);
    expect(kQuantTensorType('Q4_K_S', 'blk.3.ffn_down.weight', 256, 32, false)).toBe(GgmlType.Q5_K);
    expect(kQuantTensorType('Q5_K_S', 'blk.0.ffn_down.weight', 96, 2, false)).toBe(GgmlType.Q5_1);
  });
});
