/**
 * Answers as Markdown (CommonMark + tables, strikethrough) through markdown-it with raw HTML off:
 * any `<script>`, `<img onerror>` or other tag the model writes stays visible text. Links are kept
 * only for http(s) and mailto (no `javascript:`, `data:` or `vbscript:`), open in a new tab without
 * an opener, and images are not rendered (an image URL would be a request the user did not ask for;
 * the page's CSP refuses remote images anyway). Code blocks get a copy button (wired by the view).
 */
import MarkdownIt from 'markdown-it';

const md = new MarkdownIt({ html: false, linkify: false, typographer: false, breaks: false });
md.disable(['image']);

const SAFE_LINK = /^(https?:|mailto:)/i;
md.validateLink = (url: string) => SAFE_LINK.test(url.trim());

const defaultLinkOpen =
  md.renderer.rules.link_open ??
  ((tokens, idx, options, _env, self) => self.renderToken(tokens, idx, options));
md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
  tokens[idx].attrSet('target', '_blank');
  tokens[idx].attrSet('rel', 'noopener noreferrer nofollow');
  return defaultLinkOpen(tokens, idx, options, env, self);
};

const defaultFence = md.renderer.rules.fence!;
md.renderer.rules.fence = (tokens, idx, options, env, self) =>
  `<div class="code-block"><button type="button" class="small copy-code">Copy code</button>${defaultFence(tokens, idx, options, env, self)}</div>`;

/** HTML for an answer's Markdown: escaped text, safe links, no raw HTML. */
export function renderMarkdown(text: string): string {
  return md.render(text);
}
