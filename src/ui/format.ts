/** Numbers for people on the page (byte counts are the engine's formatBytes, one for the whole app). */
export { formatBytes } from '../worker/api';

export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '…';
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export const formatMs = (ms: number) =>
  ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
export const formatRate = (r: number) => (r >= 100 ? r.toFixed(0) : r.toFixed(1));

/** Why a generation ended, for people. */
export function finishInWords(reason: string | undefined): string {
  switch (reason) {
    case 'stop':
      return 'finished (end of turn)';
    case 'length':
      return 'stopped at the length limit';
    case 'interrupted':
      return 'stopped (interrupted)';
    default:
      return reason ?? '';
  }
}
