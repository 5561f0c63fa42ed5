import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32, inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { draw, encodePng } from './make-icons';

/** A strict reader for the PNGs we write: signature, chunk CRCs, IHDR, filter bytes, pixels. */
function decodePng(png: Uint8Array): { width: number; height: number; rgba: Uint8Array } {
  const buf = Buffer.from(png);
  expect([...buf.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  let off = 8;
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  const types: string[] = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.subarray(off + 4, off + 8).toString('ascii');
    const data = buf.subarray(off + 8, off + 8 + len);
    expect(buf.readUInt32BE(off + 8 + len), `${type} CRC`).toBe(crc32(buf.subarray(off + 4, off + 8 + len)));
    types.push(type);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      expect([...data.subarray(8)]).toEqual([8, 6, 0, 0, 0]); // 8-bit RGBA, deflate, no filter set, no interlace
    }
    if (type === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  expect(types).toEqual(['IHDR', 'IDAT', 'IEND']);
  const raw = inflateSync(Buffer.concat(idat));
  expect(raw.length).toBe(height * (1 + width * 4));
  const rgba = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    expect(raw[y * (1 + width * 4)]).toBe(0); // filter type "none" on every scanline
    rgba.set(raw.subarray(y * (1 + width * 4) + 1, (y + 1) * (1 + width * 4)), y * width * 4);
  }
  return { width, height, rgba };
}

describe('icon PNG encoder', () => {
  it('round-trips odd-sized pixels exactly', () => {
    const width = 5;
    const height = 3;
    const rgba = new Uint8Array(width * height * 4).map((_, i) => (i * 37 + 11) & 0xff);
    const png = decodePng(encodePng(rgba, width, height));
    expect(png.width).toBe(width);
    expect(png.height).toBe(height);
    expect([...png.rgba]).toEqual([...rgba]);
  });

  it('the committed icons are valid 192/512 RGBA PNGs and equal what the script draws now', () => {
    for (const size of [192, 512]) {
      const file = readFileSync(join(import.meta.dirname, '..', 'public', 'icons', `icon-${size}.png`));
      const png = decodePng(file);
      expect([png.width, png.height]).toEqual([size, size]);
      expect([...png.rgba.subarray(0, 4)]).toEqual([30, 27, 75, 255]); // the background at a corner
      expect(Buffer.from(png.rgba).equals(Buffer.from(draw(size)))).toBe(true);
    }
  });
});
