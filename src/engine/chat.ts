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
 * Hostile templates: the interpreter (@huggingface/jinja) has no eval and no prototype access;
 * chat-template.ts bounds its steps, time and sizes. A template that fails or exceeds a bound is an
 * EngineError('bad-template') naming its source. Only `encodeChatPrompt` falls back to Meta's
 * Llama 3 template then, and it says so in `warning`, which the caller must show the user.
 */
import { badTemplate, renderTemplate, TEMPLATE_LIMITS, type TemplateLimits } from './chat-template';
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
  /** Where the template came from, named in errors (e.g. "GGUF key tokenizer.chat_template"). */
  templateSource?: string;
}

/** Meta's Llama 3 Instruct template, used when neither the GGUF nor tokenizer_config.json has one. */
export const LLAMA3_DEFAULT_CHAT_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

const BUILT_IN_SOURCE = 'built-in Llama 3 template';

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

/** The roles a conversation from outside (a file, the API) may use. */
export const CHAT_ROLES = ['system', 'user', 'assistant'] as const;

/**
 * Checks a conversation that came from outside (JSON from a file, a request from a page): a
 * non-empty array of `{role, content}` with role system, user or assistant and string content
 * (other fields, such as an app's message ids or OpenAI's `name`, are left out). Throws EngineError('bad-argument') naming the first problem and its message number;
 * `where` says where it came from ("messages.json").
 */
export function parseChatMessages(value: unknown, where: string): ChatMessage[] {
  const bad = (what: string) =>
    new EngineError(
      'bad-argument',
      `${where}: ${what}. Expected a JSON array like [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}]`,
    );
  if (!Array.isArray(value)) throw bad('the messages are not an array');
  if (value.length === 0) throw bad('there are no messages');
  return value.map((m, i) => {
    const at = `message ${i + 1}`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw bad(`${at} is not an object`);
    const { role, content } = m as { role?: unknown; content?: unknown };
    if (!CHAT_ROLES.includes(role as (typeof CHAT_ROLES)[number])) {
      throw bad(`${at} has role ${JSON.stringify(role ?? null).slice(0, 40)}; use system, user or assistant`);
    }
    if (typeof content !== 'string') throw bad(`${at} has no string "content"`);
    return { role: role as ChatMessage['role'], content };
  });
}

/** The bounds, widened by the messages' own size: a long prompt is not a runaway template. */
function limitsFor(messages: readonly ChatMessage[]): TemplateLimits {
  let chars = 0;
  for (const m of messages) chars += m.content.length + m.role.length;
  return {
    ...TEMPLATE_LIMITS,
    outputChars: TEMPLATE_LIMITS.outputChars + 2 * chars,
    createdCells: TEMPLATE_LIMITS.createdCells + 16 * chars,
  };
}

function render(
  template: string,
  source: string,
  messages: readonly ChatMessage[],
  opts: RenderChatOptions,
): string {
  return renderTemplate(
    template,
    source,
    {
      // Plain data only: functions in the context would be callable from the template.
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: opts.addGenerationPrompt,
      bos_token: opts.bosToken,
      eos_token: opts.eosToken ?? '',
    },
    limitsFor(messages),
  );
}

function sourceOf(template: string | undefined, opts: RenderChatOptions): string {
  return template === undefined ? BUILT_IN_SOURCE : (opts.templateSource ?? 'the given template');
}

/**
 * Render `messages` with `template` (Meta's Llama 3 template when undefined). Throws
 * EngineError('bad-template') when the template fails or exceeds a bound.
 */
export function renderChat(
  template: string | undefined,
  messages: readonly ChatMessage[],
  opts: RenderChatOptions,
): string {
  checkMessages(messages);
  return render(template ?? LLAMA3_DEFAULT_CHAT_TEMPLATE, sourceOf(template, opts), messages, opts);
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
 * `renderChat(...)`. Throws EngineError('bad-template') when the template fails, exceeds a bound,
 * or transforms the content in a way we cannot trace back (then we cannot tell user text from
 * template text).
 */
export function renderChatSegments(
  template: string | undefined,
  messages: readonly ChatMessage[],
  opts: RenderChatOptions,
): ChatSegment[] {
  checkMessages(messages);
  const source = sourceOf(template, opts);
  const tpl = template ?? LLAMA3_DEFAULT_CHAT_TEMPLATE;
  const real = render(tpl, source, messages, opts);
  const marked = render(
    tpl,
    source,
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
  throw badTemplate(
    source,
    "changes the messages' text in a way that cannot be traced back, so the user's text cannot be told " +
      "apart from the template's control tokens.",
  );
}

/** A chat prompt's token ids, and what the user must be told about how they were made. */
export interface ChatPrompt {
  ids: number[];
  /**
   * Set when the model's own template failed and Meta's Llama 3 template was used instead: one
   * line that names the template's source and why. Show it (CLI: stderr; page: a notice).
   */
  warning?: string;
}

export interface EncodeChatOptions {
  /** End with the assistant header so the model answers. Default true. */
  addGenerationPrompt?: boolean;
  /**
   * When the model's template fails: true (default for encodeChatPrompt) uses Meta's Llama 3
   * template and sets `warning`; false throws its EngineError('bad-template').
   */
  fallback?: boolean;
}

/**
 * Token ids of a chat prompt: template pieces with special tokens, message content without.
 * The template supplies <|begin_of_text|> itself, so no BOS is added here.
 */
export function encodeChatPrompt(
  tokenizer: Llama3Tokenizer,
  messages: readonly ChatMessage[],
  opts: EncodeChatOptions = {},
): ChatPrompt {
  const renderOpts: RenderChatOptions = {
    addGenerationPrompt: opts.addGenerationPrompt ?? true,
    bosToken: tokenizer.tokenText(tokenizer.bosId),
    eosToken: tokenizer.tokenText(tokenizer.eosId),
    templateSource: tokenizer.chatTemplateSource,
  };
  let segs: ChatSegment[];
  let warning: string | undefined;
  try {
    segs = renderChatSegments(tokenizer.chatTemplate, messages, renderOpts);
  } catch (e) {
    const fallback = opts.fallback ?? true;
    if (!fallback || tokenizer.chatTemplate === undefined) throw e;
    if (!(e instanceof EngineError) || e.code !== 'bad-template') throw e;
    segs = renderChatSegments(undefined, messages, renderOpts);
    warning = `${e.message} Using Meta's Llama 3 chat template instead.`;
  }
  const ids: number[] = [];
  for (const s of segs) ids.push(...tokenizer.encode(s.text, { bos: false, allowSpecial: s.fromTemplate }));
  return warning === undefined ? { ids } : { ids, warning };
}

/**
 * encodeChatPrompt's ids, without a fallback: a model template that fails throws its
 * EngineError('bad-template') instead of being replaced behind the user's back.
 */
export function encodeChat(
  tokenizer: Llama3Tokenizer,
  messages: readonly ChatMessage[],
  opts: { addGenerationPrompt?: boolean } = {},
): number[] {
  return encodeChatPrompt(tokenizer, messages, { ...opts, fallback: false }).ids;
}
