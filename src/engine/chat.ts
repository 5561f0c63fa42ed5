/**
 * Chat prompts: a GGUF/HF chat template (Jinja) rendered with @huggingface/jinja, then tokenized so
 * that the template's own control tokens (<|start_header_id|>, <|eot_id|>, …) become special ids
 * while the messages' text stays ordinary text, even if a user types "<|eot_id|>".
 *
 * How the two are kept apart: the template is rendered a second time with every message's content
 * replaced by a placeholder (private-use characters plus the message index). Splitting that render
 * at the placeholders gives the template's pieces; putting each message's content (as is, or
 * trimmed, since Llama 3's template applies `| trim`) back between them must reproduce the real
 * render exactly, or we refuse to guess. Template pieces are then encoded with special tokens on,
 * contents with them off. Encoding piece by piece equals encoding the whole string whenever piece
 * boundaries are also pre-token boundaries, which holds for Llama 3's template (a content piece is
 * trimmed and sits between "\n\n" and a control token).
 *
 * Hostile templates: the interpreter has no eval and no prototype access (notes/reliability.md),
 * but loops are unbounded and rendering is synchronous, so we cap the output size and fall back to
 * the built-in Llama 3 template when a file's template throws.
 */
import { Template } from '@huggingface/jinja';
import { EngineError } from './errors';
import type { Llama3Tokenizer } from './tokenizer';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string;
}

export interface RenderChatOptions {
  /** End with the assistant header so the model answers (Llama 3's template always does). */
  addGenerationPrompt: boolean;
  /** The BOS text ("<|begin_of_text|>"); Llama 3's template starts with it. */
  bosToken: string;
  eosToken?: string;
}

/** Meta's Llama 3 Instruct template, used when neither the GGUF nor tokenizer_config.json has one. */
export const LLAMA3_DEFAULT_CHAT_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/** A rendered prompt longer than this is a runaway template, not a conversation. */
const MAX_RENDER_CHARS = 4 << 20;

function checkMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new EngineError('bad-argument', 'a chat needs at least one message');
  }
  for (const [i, m] of messages.entries()) {
    if (!m || typeof m.role !== 'string' || typeof m.content !== 'string') {
      throw new EngineError('bad-argument', `chat message ${i + 1} needs a string role and content`);
    }
  }
}

function render(template: string, messages: readonly ChatMessage[], opts: RenderChatOptions): string {
  let out: string;
  try {
    // Plain data only: functions in the context would be callable from the template.
    out = new Template(template).render({
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: opts.addGenerationPrompt,
      bos_token: opts.bosToken,
      eos_token: opts.eosToken ?? '',
    });
  } catch (e) {
    throw new EngineError(
      'bad-tokenizer',
      `the chat template failed: ${e instanceof Error ? e.message : e}`,
      {
        cause: e,
      },
    );
  }
  if (out.length > MAX_RENDER_CHARS) {
    throw new EngineError(
      'bad-tokenizer',
      `the chat template produced ${out.length} characters; refusing it`,
    );
  }
  return out;
}

/** Render `messages` with `template` (falling back to Meta's Llama 3 template if it throws). */
export function renderChat(
  template: string | undefined,
  messages: readonly ChatMessage[],
  opts: RenderChatOptions,
): string {
  checkMessages(messages);
  if (template !== undefined) {
    try {
      return render(template, messages, opts);
    } catch (e) {
      if (!(e instanceof EngineError) || e.code !== 'bad-tokenizer') throw e;
    }
  }
  return render(LLAMA3_DEFAULT_CHAT_TEMPLATE, messages, opts);
}

/** One piece of a rendered chat: template text (special tokens allowed) or a message's content. */
export interface ChatSegment {
  text: string;
  /** True for the template's own text; false for user-supplied message content. */
  fromTemplate: boolean;
}

const OPEN = '\uE000';
const CLOSE = '\uE001';

function splitByPlaceholders(rendered: string): (string | number)[] {
  const parts: (string | number)[] = [];
  const re = new RegExp(`${OPEN}(\\d+)${CLOSE}`, 'g');
  let last = 0;
  for (let m = re.exec(rendered); m !== null; m = re.exec(rendered)) {
    parts.push(rendered.slice(last, m.index), Number(m[1]));
    last = m.index + m[0].length;
  }
  parts.push(rendered.slice(last));
  return parts;
}

/**
 * The rendered chat as template pieces and content pieces, in order; their texts concatenate to
 * `renderChat(...)`. Throws EngineError('bad-tokenizer') when the template transforms the content
 * in a way we cannot trace back (then we cannot tell user text from template text).
 */
export function renderChatSegments(
  template: string | undefined,
  messages: readonly ChatMessage[],
  opts: RenderChatOptions,
): ChatSegment[] {
  checkMessages(messages);
  const attempt = (tpl: string): ChatSegment[] | undefined => {
    const real = render(tpl, messages, opts);
    const marked = render(
      tpl,
      messages.map((m, i) => ({ role: m.role, content: `${OPEN}${i}${CLOSE}` })),
      opts,
    );
    const parts = splitByPlaceholders(marked);
    for (const shape of [(s: string) => s, (s: string) => s.trim()]) {
      const segs: ChatSegment[] = parts.map((p) =>
        typeof p === 'number'
          ? { text: shape(messages[p]?.content ?? ''), fromTemplate: false }
          : { text: p, fromTemplate: true },
      );
      if (segs.map((s) => s.text).join('') === real) return segs.filter((s) => s.text.length > 0);
    }
    return undefined;
  };
  let segs: ChatSegment[] | undefined;
  if (template !== undefined) {
    try {
      segs = attempt(template);
    } catch (e) {
      if (!(e instanceof EngineError) || e.code !== 'bad-tokenizer') throw e;
    }
    if (segs) return segs;
  }
  segs = attempt(LLAMA3_DEFAULT_CHAT_TEMPLATE);
  if (!segs) {
    throw new EngineError('bad-tokenizer', 'cannot separate message text from the chat template');
  }
  return segs;
}

/**
 * Token ids of a chat prompt: template pieces with special tokens, message content without.
 * The template supplies <|begin_of_text|> itself, so no BOS is added here.
 */
export function encodeChat(
  tokenizer: Llama3Tokenizer,
  messages: readonly ChatMessage[],
  opts: { addGenerationPrompt?: boolean } = {},
): number[] {
  const segs = renderChatSegments(tokenizer.chatTemplate, messages, {
    addGenerationPrompt: opts.addGenerationPrompt ?? true,
    bosToken: tokenizer.tokenText(tokenizer.bosId),
    eosToken: tokenizer.tokenText(tokenizer.eosId),
  });
  const ids: number[] = [];
  for (const s of segs) ids.push(...tokenizer.encode(s.text, { bos: false, allowSpecial: s.fromTemplate }));
  return ids;
}
