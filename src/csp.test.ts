import { describe, expect, it } from 'vitest';
import { CSP_HEADER, CSP_META, CSP_META_TAG, contentSecurityPolicy } from './csp';

type Handler = (html: string) => string;
const transform = contentSecurityPolicy().transformIndexHtml as { handler: Handler };

const directives = (policy: string) => new Map(policy.split('; ').map((d) => [d.split(' ')[0], d]));

describe('content security policy', () => {
  it('is inserted right after <meta charset>, before every script and stylesheet', () => {
    const html =
      '<!doctype html><html><head>\n    <meta charset="UTF-8" />\n    <title>x</title>\n' +
      '    <script type="module" src="/assets/index.js"></script>\n' +
      '    <link rel="stylesheet" href="/assets/index.css"></head><body></body></html>';
    const out = transform.handler(html);
    const at = out.indexOf(CSP_META_TAG);
    expect(at).toBeGreaterThan(out.indexOf('<meta charset="UTF-8" />'));
    expect(at).toBeLessThan(out.indexOf('<script'));
    expect(at).toBeLessThan(out.indexOf('<link'));
    expect(out.replace(`\n    ${CSP_META_TAG}`, '')).toBe(html);
  });

  it('refuses a page without <meta charset> rather than ship it without a policy', () => {
    expect(() => transform.handler('<html><head><script src="/a.js"></script></head></html>')).toThrow(
      /no <meta charset>/,
    );
  });

  it('only in the build: dev keeps the inline scripts Vite and React Refresh inject', () => {
    expect(contentSecurityPolicy().apply).toBe('build');
  });

  it('the meta form leaves out what a meta tag cannot carry; the header adds frame-ancestors', () => {
    expect(directives(CSP_META).has('frame-ancestors')).toBe(false);
    expect(directives(CSP_HEADER).get('frame-ancestors')).toBe("frame-ancestors 'none'");
    expect(CSP_HEADER.startsWith(`${CSP_META}; `)).toBe(true);
    // No inline script and no eval, in any form.
    expect(CSP_HEADER).not.toMatch(/unsafe-inline|unsafe-eval|unsafe-hashes|wasm-unsafe-eval/);
    expect(directives(CSP_META).get('script-src')).toBe("script-src 'self'");
  });
});
