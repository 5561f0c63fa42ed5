/**
 * Process entry of the CLI: `npm run --silent cli -- generate|tokenize …` (docs/cli.md).
 * Wires Ctrl-C to cancellation and turns runCli's result into the exit code.
 */
import { runCli } from './cli';

async function main(): Promise<void> {
  const controller = new AbortController();
  // First Ctrl-C stops generation cleanly (text so far is kept); a second one exits at once.
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  const code = await runCli(
    process.argv.slice(2),
    { stdout: process.stdout, stderr: process.stderr, env: process.env },
    controller.signal,
  );
  process.off('SIGINT', onSigint);
  // Dawn can keep the event loop alive after the device is destroyed: exit once stdout drained.
  process.stdout.write('', () => process.exit(code));
}

void main();
