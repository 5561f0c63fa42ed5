/**
 * The expected replies for the chat e2e, computed by the same engine in Node (Dawn, WebGPU on
 * SwiftShader): the user's messages are sent one by one, each turn answered greedily from the whole
 * conversation so far with a fresh KV cache (`reuseCache: false`: nothing carried over, so a page
 * that reuses its cache must still give the same text). LoadedModel.chat is what the CLI's
 * `generate --messages` runs. Prints `{"replies": [...]}` as one line.
 *
 *   node --import tsx --import ./scripts/raw-loader.mjs e2e/chat-oracle.ts MODEL USERS.json MAX_TOKENS
 */
import { readFileSync } from 'node:fs';
import { openModelSource } from '../src/cli/source';
import type { ChatMessage } from '../src/engine/chat';
import { LoadedModel } from '../src/engine/engine';
import { nodeGpu } from '../src/node/gpu';

const [modelPath, usersFile, maxTokens] = process.argv.slice(2);
const users = JSON.parse(readFileSync(usersFile, 'utf8')) as string[];
const opened = await openModelSource(modelPath);
const model = await LoadedModel.load(opened.source, { device: 'gpu', gpu: await nodeGpu() });
const messages: ChatMessage[] = [];
const replies: string[] = [];
for (const content of users) {
  messages.push({ role: 'user', content });
  const r = await model.chat({
    messages,
    maxTokens: Number(maxTokens),
    sampling: { temperature: 0 },
    reuseCache: false,
  });
  messages.push({ role: 'assistant', content: r.text });
  replies.push(r.text);
}
model.dispose();
await opened.close();
process.stdout.write(`${JSON.stringify({ replies })}\n`);
process.exit(0);
