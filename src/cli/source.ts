/** The model bytes for the CLI: a local file, or an http(s) URL read with Range requests. */
import { HttpRangeSource } from '../engine/http-source';
import type { RandomAccessSource } from '../engine/source';
import { NodeFileSource } from '../node/file-source';

export interface OpenedSource {
  source: RandomAccessSource;
  close(): Promise<void>;
}

export async function openModelSource(pathOrUrl: string): Promise<OpenedSource> {
  if (/^https?:\/\//i.test(pathOrUrl)) {
    const source = await HttpRangeSource.open(pathOrUrl);
    return { source, close: async () => {} };
  }
  const source = await NodeFileSource.open(pathOrUrl);
  return { source, close: async () => source.close() };
}
