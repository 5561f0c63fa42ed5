/**
 * Flag values, parsed in-process (cli.test.ts spawns the CLI for exit codes and usage text): every
 * numeric flag takes plain decimal only, and says which flag and which range when it does not.
 */
import { describe, expect, it } from 'vitest';
import { type GenerateCommand, parseCommand, UsageError } from './args';

const generate = (...args: string[]) => parseCommand(['generate', ...args]) as GenerateCommand;

function usageError(args: string[]): string {
  try {
    parseCommand(['generate', ...args]);
  } catch (e) {
    if (e instanceof UsageError) return e.message;
    throw e;
  }
  throw new Error(`${JSON.stringify(args)} was accepted`);
}

/** Values Number() takes but a person typing a decimal number does not mean. */
const NOT_DECIMAL = [
  '0x10',
  '0b1',
  '0o7',
  '',
  ' 1',
  '1 ',
  '\t1',
  '+1',
  '1e3',
  '1e999',
  'Infinity',
  '-Infinity',
  'NaN',
  '1_0',
  '١',
];

describe('numeric flags', () => {
  it('take plain decimals', () => {
    const c = generate('--temperature', '0.7', '--top-p', '.5', '--top-k', '40', '--max-tokens', '007');
    expect([c.temperature, c.topP, c.topK, c.maxTokens]).toEqual([0.7, 0.5, 40, 7]);
    expect(generate('--temperature', '1.').temperature).toBe(1);
    expect(generate('--temperature', '0').temperature).toBe(0);
    expect(generate('--batch-size', '64', '--max-seq-len', '2').batchSize).toBe(64);
  });

  it.each([
    ['temperature', 'a decimal number ≥ 0 (0 = greedy)'],
    ['top-p', 'a decimal number in (0, 1]'],
  ])('--%s refuses anything else, naming the flag and the range', (flag, range) => {
    for (const v of NOT_DECIMAL) {
      expect(usageError([`--${flag}=${v}`])).toBe(`--${flag} must be ${range}, got ${JSON.stringify(v)}`);
    }
  });

  it.each([
    ['batch-size', 1, 64],
    ['max-tokens', 1, Number.MAX_SAFE_INTEGER],
    ['top-k', 0, Number.MAX_SAFE_INTEGER],
    ['max-seq-len', 2, Number.MAX_SAFE_INTEGER],
  ])('--%s refuses anything but a decimal integer in its range', (flag, min, max) => {
    const bad = [...NOT_DECIMAL, '2.5', '1.0', String(min - 1), '99999999999999999999'];
    if (max < Number.MAX_SAFE_INTEGER) bad.push(String(max + 1));
    for (const v of bad) {
      expect(usageError([`--${flag}=${v}`])).toBe(
        `--${flag} must be a decimal integer from ${min} to ${max}, got ${JSON.stringify(v)}`,
      );
    }
  });

  it('a long or escape-laden value is quoted short and escaped', () => {
    const m = usageError(['--temperature', `\x1b[2J${'9'.repeat(100_000)}x`]);
    expect(m).toMatch(
      /^--temperature must be a decimal number ≥ 0 \(0 = greedy\), got "\\x1b\[2J9+"…\(\d+ more bytes\)$/,
    );
    expect(m.length).toBeLessThan(200);
  });

  it('--prompt-ids takes comma-separated decimal ids that are safe integers', () => {
    expect(generate('--prompt-ids', '128000, 9906 ,1').promptIds).toEqual([[128000, 9906, 1]]);
    for (const v of ['0x10', '1,,2', '', '1e3', '99999999999999999999']) {
      expect(usageError(['--prompt-ids', v])).toMatch(/^--prompt-ids must be comma-separated token ids/);
    }
  });
});

describe('--f16', () => {
  it('is off unless given (f32 kernels by default), and takes no value', () => {
    expect(generate().f16).toBe(false);
    expect(generate('--f16').f16).toBe(true);
    expect(() => generate('--f16=yes')).toThrow();
  });
});
