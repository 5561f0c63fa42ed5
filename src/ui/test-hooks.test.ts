import { describe, expect, it } from 'vitest';
import { TEST_HOOKS_ENABLED, testHooks } from './test-hooks';

describe('test hooks in the URL', () => {
  it('do nothing in a build without VITE_TEST_HOOKS=1 (any build but the e2e one)', () => {
    expect(TEST_HOOKS_ENABLED).toBe(false);
    expect(testHooks('?chunkSize=4194304')).toEqual({});
    expect(testHooks('?chunkSize=0.5')).toEqual({});
    expect(testHooks('?confirmAbove=1000')).toEqual({});
  });

  it('in the e2e build, take a whole number of bytes above which downloads are confirmed', () => {
    expect(testHooks('?confirmAbove=1000', true)).toEqual({ confirmAbove: 1000 });
    expect(testHooks('?confirmAbove=-1', true)).toEqual({});
    expect(testHooks('?confirmAbove=1000&chunkSize=65536', true)).toEqual({
      confirmAbove: 1000,
      chunkSize: 65536,
    });
  });

  it('in the e2e build, take only whole chunk sizes from 64 KiB to 256 MiB', () => {
    expect(testHooks('?chunkSize=4194304', true)).toEqual({ chunkSize: 4 << 20 });
    expect(testHooks('?model=x', true)).toEqual({});
    for (const bad of ['0.5', '1', '65535', '1e6', '0x100000', '', '268435457', '99999999999']) {
      expect(testHooks(`?chunkSize=${bad}`, true), bad).toEqual({});
    }
  });
});
