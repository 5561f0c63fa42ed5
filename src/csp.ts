// The app's Content-Security-Policy, and the Vite plugin that puts it into the production build.
//
// Where it applies:
// - Every production build carries it as a <meta http-equiv> right after <meta charset> (before
//   every script and stylesheet, which it must precede to cover them): any static host, headers or
//   not, serves it. index.html itself has none, so that dev works (below).
// - `vite preview` also sends it as a response header (vite.config.ts), adding what a meta tag
//   cannot carry: frame-ancestors. A header also reaches the engine worker and the service worker,
//   which have their own policy (a page's meta policy does not travel to a worker loaded by URL).
// - `vite` (dev) has none: its client and React Refresh inject inline scripts and styles, which
//   this policy forbids. Dev is for editing; what ships is the build, and the e2e tests run that.
//
// The policy: everything is refused unless listed. Scripts, workers (the engine worker, the service
// worker), styles, the manifest and images come only from the app's own origin, with no inline
// script and no eval: nothing here needs either (comlink, @huggingface/jinja and React run without
// eval, and nothing compiles WebAssembly). Model downloads go to the app's origin (the demo) or any
// https host, since a user may type any model URL. Plain http is refused except on this machine
// (localhost and 127.0.0.1, any port): a local-first app may load a model a local server offers,
// and that is also how the e2e tests serve theirs. No plugins, no frames, no form submissions,
// no <base> elsewhere. React sets `style` props through the CSSOM, which CSP does not govern, so
// style-src needs no 'unsafe-inline'.
import type { Plugin } from 'vite';

const DIRECTIVES: readonly (readonly [string, string])[] = [
  ['default-src', "'none'"],
  ['script-src', "'self'"],
  ['worker-src', "'self'"],
  ['connect-src', "'self' https: http://localhost:* http://127.0.0.1:*"],
  ['img-src', "'self' data: blob:"],
  ['style-src', "'self'"],
  ['manifest-src', "'self'"],
  ['object-src', "'none'"],
  ['frame-src', "'none'"],
  ['base-uri', "'self'"],
  ['form-action', "'none'"],
];

const join = (directives: readonly (readonly [string, string])[]) =>
  directives.map(([name, value]) => `${name} ${value}`).join('; ');

/** The policy as a `<meta http-equiv>` carries it (browsers ignore frame-ancestors there, with a warning). */
export const CSP_META = join(DIRECTIVES);

/** The policy as a response header: the meta policy plus frame-ancestors (no page may frame the app). */
export const CSP_HEADER = join([...DIRECTIVES, ['frame-ancestors', "'none'"]]);

/** The `<meta>` element carrying CSP_META (single quotes are fine inside a double-quoted attribute). */
export const CSP_META_TAG = `<meta http-equiv="Content-Security-Policy" content="${CSP_META}" />`;

/**
 * Vite plugin: CSP_META_TAG right after `<meta charset>` in the `vite build` output (never in dev).
 * After the charset, which must stay in the first 1024 bytes; before every script and stylesheet,
 * since a meta policy covers only what comes after it.
 */
export function contentSecurityPolicy(): Plugin {
  return {
    name: 'app-content-security-policy',
    apply: 'build',
    transformIndexHtml: {
      order: 'post',
      handler(html) {
        const charset = /<meta charset="[^"]*"\s*\/?>/i.exec(html);
        if (!charset) throw new Error('content security policy: index.html has no <meta charset> to follow');
        const at = charset.index + charset[0].length;
        return `${html.slice(0, at)}\n    ${CSP_META_TAG}${html.slice(at)}`;
      },
    },
  };
}
