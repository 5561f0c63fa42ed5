import { describe, expect, it } from 'vitest';
import { formatBytes } from './format-bytes';

describe('formatBytes', () => {
  it('writes file sizes in decimal units, three significant digits at most', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(1000)).toBe('1.0 kB');
    expect(formatBytes(53_891_104)).toBe('53.9 MB');
    expect(formatBytes(770_000_000)).toBe('770 MB');
    expect(formatBytes(4_661_216_000)).toBe('4.7 GB');
  });

  it('writes powers of two in binary units', () => {
    expect(formatBytes(64 * 1024, 'binary')).toBe('64.0 KiB');
    expect(formatBytes(256 * 1024 * 1024, 'binary')).toBe('256 MiB');
    expect(formatBytes(1023, 'binary')).toBe('1023 B');
  });

  it('says "?" for what is not a number', () => {
    expect(formatBytes(undefined)).toBe('?');
    expect(formatBytes(Number.NaN)).toBe('?');
    expect(formatBytes(Number.POSITIVE_INFINITY)).toBe('?');
  });
});
