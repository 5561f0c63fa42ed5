/** The error line: a title for the error's code, the engine's message, and what can be done. */
import type { EngineErrorCode } from '../../worker/api';
import type { UiError } from '../session';

const ERROR_TITLES: Partial<Record<EngineErrorCode, string>> = {
  'bad-gguf': 'Not a usable GGUF file',
  'unsupported-model': 'Unsupported model',
  'no-webgpu': 'WebGPU is not available',
  'gpu-limits': 'This GPU is too limited',
  'gpu-out-of-memory': 'Out of GPU memory',
  'device-lost': 'The GPU device was lost',
  network: 'Download failed',
  'storage-full': 'Not enough storage',
  storage: 'Cache problem',
  interrupted: 'Stopped',
  'context-overflow': 'Prompt too long',
  'bad-argument': 'Check the settings',
  'bad-tokenizer': 'Unusable tokenizer',
  'bad-template': "The model's chat template failed",
  'non-finite': 'The model produced invalid numbers',
  'kernel-rejected': 'A GPU kernel failed its check',
};

/**
 * `failedLoad`: the error ended a load (`name`, what it was loading); the model loaded before it,
 * if any, is still loaded and in use (`stillUsing`).
 */
export function ErrorView({
  error,
  failedLoad,
  onReload,
}: {
  error: UiError;
  failedLoad?: { name: string; stillUsing?: string };
  onReload?: () => void;
}) {
  const what = !failedLoad
    ? error.message
    : error.code === 'interrupted'
      ? `Loading ${failedLoad.name} was cancelled.`
      : `Loading ${failedLoad.name} failed: ${error.message}`;
  return (
    <div
      className={`banner ${error.code === 'interrupted' ? 'info' : 'error'}`}
      role="alert"
      data-code={error.code}
    >
      <strong>{ERROR_TITLES[error.code] ?? 'Something went wrong'}.</strong> <span>{what}</span>
      {failedLoad?.stillUsing && <span> Still using {failedLoad.stillUsing}.</span>}
      {error.code === 'device-lost' && onReload && (
        <button type="button" className="small" onClick={onReload}>
          Reload the model
        </button>
      )}
    </div>
  );
}
