// Draws the app icons (public/icons/icon-192.png, icon-512.png) with no image library: pixels are
// computed here and written as a PNG (8-bit RGBA, one zlib stream, CRC per chunk, as the PNG spec says).
// The result is committed; run again only to change the design:
//   node --import tsx scripts/make-icons.ts
//
// Design: a full-bleed indigo square (so the "maskable" purpose works: launchers may crop to a
// circle, and everything that matters sits inside the central 60% safe zone) with a 4×4 grid of
// tiles in four shades, a nod to 4-bit quantized weight blocks.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { deflateSync } from 'node:zlib';

type Rgb = [number, number, number];

const BACKGROUND: Rgb = [30, 27, 75];
// Four shades for the tiles: one per "nibble level", light to bright.
const SHADES: Rgb[] = [
  [129, 140, 248],
  [165, 180, 252],
  [224, 231, 255],
  [251, 191, 36],
];
// Which shade each tile gets, row by row (a fixed pattern, so the icon never changes by accident).
const PATTERN = [0, 2, 1, 3, 2, 1, 3, 0, 1, 3, 0, 2, 3, 0, 2, 1];

/** Coverage in [0, 1] of pixel (x, y) of a size×size icon by the tile grid, with rounded tile corners. */
function tileAt(x: number, y: number, size: number): { shade: number; inside: boolean } {
  const grid = size * 0.56; // the grid spans 56% of the icon: inside the maskable safe zone (a circle of 80%)
  const origin = (size - grid) / 2;
  const cell = grid / 4;
  const gap = cell * 0.14;
  const radius = cell * 0.18;
  const gx = x - origin;
  const gy = y - origin;
  if (gx < 0 || gy < 0 || gx >= grid || gy >= grid) return { shade: -1, inside: false };
  const col = Math.floor(gx / cell);
  const row = Math.floor(gy / cell);
  // Position inside the tile, measured from the tile's inner edges (gap/2 on each side).
  const lx = gx - col * cell - gap / 2;
  const ly = gy - row * cell - gap / 2;
  const side = cell - gap;
  if (lx < 0 || ly < 0 || lx >= side || ly >= side) return { shade: -1, inside: false };
  // Rounded corners: distance from the nearest corner centre must be within the radius.
  const cx = Math.min(Math.max(lx, radius), side - radius);
  const cy = Math.min(Math.max(ly, radius), side - radius);
  const inside = (lx - cx) ** 2 + (ly - cy) ** 2 <= radius * radius;
  return { shade: PATTERN[row * 4 + col], inside };
}

/** RGBA pixels, 4×4 supersampled per pixel so the tile edges are antialiased. */
export function draw(size: number): Uint8Array {
  const rgba = new Uint8Array(size * size * 4);
  const ss = 4;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const acc = [0, 0, 0];
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          const t = tileAt(x + (sx + 0.5) / ss, y + (sy + 0.5) / ss, size);
          const c = t.inside ? SHADES[t.shade] : BACKGROUND;
          acc[0] += c[0];
          acc[1] += c[1];
          acc[2] += c[2];
        }
      }
      const o = (y * size + x) * 4;
      rgba[o] = Math.round(acc[0] / (ss * ss));
      rgba[o + 1] = Math.round(acc[1] / (ss * ss));
      rgba[o + 2] = Math.round(acc[2] / (ss * ss));
      rgba[o + 3] = 255;
    }
  }
  return rgba;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), 8 + data.length);
  return out;
}

export function encodePng(rgba: Uint8Array, width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // colour type: RGBA
  // bytes 10..12: compression 0, filter method 0, no interlace
  // Each scanline starts with its filter type; 0 (none) keeps the encoder obvious.
  const raw = Buffer.alloc(height * (1 + width * 4));
  for (let y = 0; y < height; y++) {
    raw[y * (1 + width * 4)] = 0;
    Buffer.from(rgba.buffer, rgba.byteOffset + y * width * 4, width * 4).copy(raw, y * (1 + width * 4) + 1);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

/** Writes public/icons/icon-<size>.png for each size. */
export function writeIcons(sizes: readonly number[] = [192, 512]): string[] {
  const outDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'public', 'icons');
  mkdirSync(outDir, { recursive: true });
  return sizes.map((size) => {
    const file = join(outDir, `icon-${size}.png`);
    writeFileSync(file, encodePng(draw(size), size, size));
    return file;
  });
}

// Run as a script (not when a test imports the encoder).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const file of writeIcons()) console.log(`wrote ${file}`);
}
