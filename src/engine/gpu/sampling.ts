/**
 * The GPU sampler (shaders/sampling.wgsl): its KernelSpec, the two pipelines and bind groups the
 * model wires up, and the self-check against `sampleToken` (src/engine/sampling/sampler.ts).
 *
 * Two dispatches per step: `partials` (ceil(V / 1024) workgroups per sequence, one read of the
 * logits: per-slice max, Σexp, NaN/Inf count and the slice's 64 first tokens in the order) and
 * `pick` (one workgroup per sequence: merge, top-k, top-p, draw; an exact search over all logits
 * only when the answer lies past the merged candidates). Only the u32 ids are read back.
 */
import samplingSource from '../../../shaders/sampling.wgsl?raw';
import { EngineError } from '../errors';
import { sampleToken } from '../sampling/sampler';
import type { CheckResult, KernelSpec, ModelShape } from './check/registry';
import { cachedPipeline, shaderModule } from './pipelines';
import { createStorage, createUniform, makeRng, poison, readU32, runCases } from './check/testing';

/**
 * The id the sampling kernel writes for a sequence whose logits hold NaN or ±Inf (corrupt weights);
 * the runner turns it into EngineError('non-finite'), as `sampleToken` throws on the CPU.
 */
export const NON_FINITE_TOKEN = 0xffffffff;

/** Logits per `partials` workgroup and candidates each keeps (CHUNK and KEEP in the shader). */
const CHUNK = 1024;
const KEEP = 64;
const RECORD_BYTES = (4 + 2 * KEEP) * 4;

/** Workgroups of `partials` per sequence. */
export const samplingGroups = (vocab: number) => Math.ceil(vocab / CHUNK);

/** Bytes of the sampler's scratch (per-workgroup records) for `seqs` sequences. */
export const samplingScratchBytes = (seqs: number, vocab: number) =>
  seqs * samplingGroups(vocab) * RECORD_BYTES;

/** The 32 bits of a draw u = bits / 2^32 (`Rng.next()` values are exactly such fractions). */
export function drawBits(u: number): number {
  const bits = u * 2 ** 32;
  if (!(Number.isInteger(bits) && bits >= 0 && bits < 2 ** 32)) {
    throw new EngineError('internal', `draw ${u} is not a 32-bit fraction in [0, 1)`);
  }
  return bits;
}

export interface SamplingPipelines {
  partials: GPUComputePipeline;
  pick: GPUComputePipeline;
  vocab: number;
}

export function samplingPipelines(
  device: GPUDevice,
  module: GPUShaderModule,
  vocab: number,
): SamplingPipelines {
  const make = (entryPoint: string) =>
    cachedPipeline(device, module, entryPoint, { VOCAB: vocab }, `sampling.${entryPoint}`);
  return { partials: make('partials'), pick: make('pick'), vocab };
}

export interface SamplingBuffers {
  /** uniform { n_seqs, temperature f32, top_k, top_p f32 } */
  params: GPUBuffer;
  /** [S] vec4<u32> (last_row, len, draw bits, 0) */
  seqs: GPUBuffer;
  /** [S, V] f32 */
  logits: GPUBuffer;
  /** `samplingScratchBytes(S, V)` */
  scratch: GPUBuffer;
  /** [S] u32, written */
  tokens: GPUBuffer;
}

/** Pipeline + bind group of each pass (`partials` binds 0, 2, 3; `pick` all five). */
export function samplingKernels(
  device: GPUDevice,
  p: SamplingPipelines,
  b: SamplingBuffers,
): {
  partials: { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup };
  pick: { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup };
} {
  const group = (pipeline: GPUComputePipeline, entries: [number, GPUBuffer][], label: string) =>
    device.createBindGroup({
      label,
      layout: pipeline.getBindGroupLayout(0),
      entries: entries.map(([binding, buffer]) => ({ binding, resource: { buffer } })),
    });
  return {
    partials: {
      pipeline: p.partials,
      bindGroup: group(
        p.partials,
        [
          [0, b.params],
          [2, b.logits],
          [3, b.scratch],
        ],
        'sampling.partials',
      ),
    },
    pick: {
      pipeline: p.pick,
      bindGroup: group(
        p.pick,
        [
          [0, b.params],
          [1, b.seqs],
          [2, b.logits],
          [3, b.scratch],
          [4, b.tokens],
        ],
        'sampling.pick',
      ),
    },
  };
}

export interface SamplingCase {
  vocab: number;
  seqs: number;
  temperature: number;
  topK: number;
  topP: number;
  /** Logits are uniform in [−scale, scale); 0: every logit equal (a random value, the same for all). */
  scale: number;
  /** NaN or ±Inf written at one random logit of each sequence: the kernel must answer NON_FINITE_TOKEN. */
  poison?: number;
  /**
   * Draws of the first sequences, as u (multiples of 2^-32); the rest random. The extremes 0 and
   * 1 − 2^-32 pick the first and the last kept token, so a cut one token off cannot pass.
   */
  draws?: number[];
}

/** The largest draw: u = 1 − 2^-32 picks the last kept token. */
export const LAST_DRAW = 1 - 2 ** -32;

/** Run the sampler on `logits` [seqs, vocab] with draws `u` (multiples of 2^-32); the token ids. */
export async function runSampling(
  device: GPUDevice,
  pipelines: SamplingPipelines,
  logits: Float32Array,
  u: readonly number[],
  c: Pick<SamplingCase, 'seqs' | 'temperature' | 'topK' | 'topP'>,
): Promise<Uint32Array> {
  const seqs = new Uint32Array(4 * c.seqs);
  for (let s = 0; s < c.seqs; s++) seqs[4 * s + 2] = drawBits(u[s]);
  const params = new Uint32Array([c.seqs, 0, c.topK, 0]);
  new Float32Array(params.buffer).set([c.temperature], 1);
  new Float32Array(params.buffer).set([c.topP], 3);
  const buffers: SamplingBuffers = {
    params: createUniform(device, params, 'params'),
    seqs: createStorage(device, seqs, 'seqs'),
    logits: createStorage(device, logits, 'logits'),
    scratch: createStorage(device, samplingScratchBytes(c.seqs, pipelines.vocab), 'scratch'),
    tokens: createStorage(device, c.seqs * 4, 'tokens'),
  };
  // Poisoned: a pass that skips its writes leaves NaN records and the NON_FINITE id, never a token.
  poison(device, buffers.scratch);
  poison(device, buffers.tokens);
  const k = samplingKernels(device, pipelines, buffers);
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(k.partials.pipeline);
  pass.setBindGroup(0, k.partials.bindGroup);
  pass.dispatchWorkgroups(samplingGroups(pipelines.vocab), c.seqs);
  pass.setPipeline(k.pick.pipeline);
  pass.setBindGroup(0, k.pick.bindGroup);
  pass.dispatchWorkgroups(c.seqs);
  pass.end();
  device.queue.submit([enc.finish()]);
  const got = await readU32(device, buffers.tokens, 0, c.seqs);
  for (const b of Object.values(buffers)) b.destroy();
  return got;
}

/** A uniform draw in [0, 1) that is a multiple of 2^-32, like `Rng.next()`. */
const draw32 = (rng: () => number) => Math.floor(rng() * 2 ** 32) / 2 ** 32;

/** Compare the kernel with `sampleToken` on fresh random logits and draws; result per case. */
export async function checkSamplingCases(
  device: GPUDevice,
  source: string,
  cases: readonly SamplingCase[],
  seed: number,
): Promise<CheckResult> {
  const module = shaderModule(device, source, 'check:sampling');
  const rng = makeRng(seed);
  const pipelines = new Map<number, SamplingPipelines>();
  return runCases(
    cases,
    async (c) => {
      let p = pipelines.get(c.vocab);
      if (!p) {
        p = samplingPipelines(device, module, c.vocab);
        pipelines.set(c.vocab, p);
      }
      const logits = new Float32Array(c.seqs * c.vocab);
      for (let s = 0; s < c.seqs; s++) {
        const same = (2 * rng() - 1) * 4;
        for (let i = 0; i < c.vocab; i++)
          logits[s * c.vocab + i] = c.scale === 0 ? same : (2 * rng() - 1) * c.scale;
      }
      if (c.poison !== undefined) {
        for (let s = 0; s < c.seqs; s++) logits[s * c.vocab + Math.floor(rng() * c.vocab)] = c.poison;
      }
      const u = Array.from({ length: c.seqs }, (_, s) => c.draws?.[s] ?? draw32(rng));
      const got = await runSampling(device, p, logits, u, c);
      const want = new Float64Array(c.seqs); // f64: NON_FINITE_TOKEN does not fit an f32
      const opts = { temperature: c.temperature, topK: c.topK, topP: c.topP, seed: 0 };
      for (let s = 0; s < c.seqs; s++) {
        want[s] =
          c.poison === undefined
            ? sampleToken(logits.subarray(s * c.vocab, (s + 1) * c.vocab), opts, u[s])
            : NON_FINITE_TOKEN;
      }
      return { got: Array.from(got), ref: want };
    },
    0,
    (c) =>
      `vocab=${c.vocab} seqs=${c.seqs} T=${c.temperature} top_k=${c.topK} top_p=${c.topP}` +
      (c.scale === 0 ? ' all logits equal' : ` |logit| < ${c.scale}`) +
      (c.poison === undefined ? '' : ` with a ${c.poison} logit`),
  );
}

const EDGES = [0, LAST_DRAW];

/**
 * The load-time check on the user's adapter: one vocabulary (each is 2 pipelines to compile) of
 * three groups, the last one short; greedy, the top-k/top-p fast path, the exact fallback (equal
 * logits: a nucleus past the 64 candidates) and a NaN logit.
 */
export const SAMPLING_QUICK_CASES: readonly SamplingCase[] = [
  { vocab: 2100, seqs: 2, temperature: 0, topK: 0, topP: 1, scale: 2 },
  { vocab: 2100, seqs: 3, temperature: 0.8, topK: 40, topP: 0.9, scale: 4, draws: EDGES },
  { vocab: 2100, seqs: 3, temperature: 0.6, topK: 0, topP: 0.9, scale: 0, draws: EDGES },
  { vocab: 2100, seqs: 1, temperature: 0.6, topK: 0, topP: 0.9, scale: 4, poison: Number.NaN },
];

/**
 * The full self-check: awkward vocabularies, settings, ties, wide nuclei, NaN/Inf. Few distinct
 * vocabularies: each is a pipeline to compile (VOCAB is an override), seconds on SwiftShader.
 */
export const SAMPLING_CASES: readonly SamplingCase[] = [
  { vocab: 1, seqs: 1, temperature: 0, topK: 0, topP: 1, scale: 1 },
  { vocab: 1, seqs: 2, temperature: 0.6, topK: 0, topP: 0.9, scale: 1, draws: EDGES },
  { vocab: 2, seqs: 3, temperature: 1, topK: 0, topP: 1, scale: 1, draws: EDGES },
  { vocab: 7, seqs: 3, temperature: 0, topK: 0, topP: 1, scale: 1 },
  { vocab: 7, seqs: 4, temperature: 0.6, topK: 3, topP: 0.9, scale: 2, draws: EDGES },
  { vocab: 7, seqs: 3, temperature: 1, topK: 0, topP: 1, scale: 2, draws: EDGES },
  { vocab: 1000, seqs: 4, temperature: 0, topK: 0, topP: 1, scale: 5 },
  { vocab: 1000, seqs: 4, temperature: 0.6, topK: 0, topP: 0.9, scale: 8, draws: EDGES },
  { vocab: 1000, seqs: 3, temperature: 0.8, topK: 40, topP: 1, scale: 4, draws: EDGES },
  { vocab: 1000, seqs: 3, temperature: 1.3, topK: 20, topP: 0.5, scale: 3, draws: EDGES },
  // Three groups (two full, one of 52 tokens); top-k past one group's 64 candidates.
  { vocab: 2100, seqs: 3, temperature: 0.6, topK: 0, topP: 0.9, scale: 12, draws: EDGES },
  { vocab: 2100, seqs: 3, temperature: 0.7, topK: 100, topP: 0.95, scale: 6, draws: EDGES },
  // A wide nucleus (a flat spread): past the candidates, the exact fallback.
  { vocab: 2100, seqs: 3, temperature: 1.5, topK: 0, topP: 0.99, scale: 1, draws: EDGES },
  { vocab: 2100, seqs: 3, temperature: 1, topK: 0, topP: 1, scale: 1, draws: EDGES },
  // Equal logits: ordered by id; top-p and the draw cut inside the tie (fallback past 64).
  { vocab: 2, seqs: 3, temperature: 0.6, topK: 0, topP: 0.9, scale: 0, draws: EDGES },
  { vocab: 7, seqs: 4, temperature: 1, topK: 0, topP: 0.9, scale: 0, draws: EDGES },
  // top-k 10 then top-p 0.9 of 10 equal weights: 9 ≤ f32(0.9)·10 is false, so 9 are kept.
  { vocab: 1000, seqs: 4, temperature: 1, topK: 10, topP: 0.9, scale: 0, draws: [...EDGES, 0.5] },
  { vocab: 1000, seqs: 4, temperature: 0.6, topK: 40, topP: 0.9, scale: 0, draws: EDGES },
  { vocab: 1000, seqs: 3, temperature: 0.6, topK: 0, topP: 0.9, scale: 0, draws: EDGES },
  { vocab: 1000, seqs: 2, temperature: 0, topK: 0, topP: 1, scale: 5, poison: Number.NaN },
  { vocab: 1000, seqs: 2, temperature: 0.8, topK: 40, topP: 1, scale: 4, poison: Number.NaN },
  { vocab: 2100, seqs: 2, temperature: 0.6, topK: 0, topP: 0.9, scale: 4, poison: Number.POSITIVE_INFINITY },
  { vocab: 7, seqs: 1, temperature: 0, topK: 0, topP: 1, scale: 2, poison: Number.NEGATIVE_INFINITY },
];

export const samplingSpec: KernelSpec = {
  name: 'sampling',
  source: samplingSource,
  check: (device, source) => checkSamplingCases(device, source, SAMPLING_CASES, 0x5eed04 ^ Date.now()),
  quickCheck: (device, source, shape?: ModelShape) =>
    checkSamplingCases(
      device,
      source,
      // At the model's vocabulary one case, one sequence (a dispatch at 128256 takes seconds on
      // SwiftShader): both passes, top-k then top-p, at both ends of the draw.
      shape ? [{ ...SAMPLING_QUICK_CASES[1], seqs: 2, vocab: shape.vocabSize }] : SAMPLING_QUICK_CASES,
      0x5eed04 ^ Date.now(),
    ),
};
