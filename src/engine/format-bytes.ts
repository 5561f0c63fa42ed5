/**
 * Byte counts for people, written one way by the page, the CLI and every error message: decimal
 * units, as download sites and tools print file sizes ("4.7 GB", "770 MB", "999 B"); binary units
 * only for sizes that are powers of two by nature (cache chunks: "64 KiB").
 */
export function formatBytes(n: number | undefined, units: 'decimal' | 'binary' = 'decimal'): string {
  if (n === undefined || !Number.isFinite(n)) return '?';
  const names = units === 'binary' ? ['B', 'KiB', 'MiB', 'GiB', 'TiB'] : ['B', 'kB', 'MB', 'GB', 'TB'];
  const step = units === 'binary' ? 1024 : 1000;
  let i = 0;
  let v = n;
  while (Math.abs(v) >= step && i < names.length - 1) {
    v /= step;
    i++;
  }
  // Three significant digits at most: "53.9 MB", "770 MB" (never "770.0 MB").
  return `${i === 0 ? v : v.toFixed(Math.abs(v) >= 100 ? 0 : 1)} ${names[i]}`;
}
