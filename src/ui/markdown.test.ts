import { describe, expect, it } from 'vitest';
import { renderMarkdown } from './markdown';

describe('answers as markdown', () => {
  it('renders lists, tables, emphasis and fenced code with a copy button', () => {
    const html = renderMarkdown(
      '- one\n- **two**\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```js\nconst x = 1 < 2;\n```\n',
    );
    expect(html).toContain('<ul>');
    expect(html).toContain('<strong>two</strong>');
    expect(html).toContain('<table>');
    expect(html).toContain('<td>2</td>');
    expect(html).toContain('class="small copy-code"');
    expect(html).toContain('<code class="language-js">const x = 1 &lt; 2;\n</code>');
  });

  it('never turns model output into live HTML, script links or images', () => {
    const hostile = [
      '<img src=x onerror="window.pwned=1">',
      '<script>window.pwned=1</script>',
      '[x](javascript:window.pwned=1)',
      '[y](JAVASCRIPT:alert(1))',
      '[z](data:text/html,<script>alert(1)</script>)',
      '![i](https://example.com/track.png)',
      '<a href="javascript:alert(1)">a</a>',
    ].join('\n\n');
    const html = renderMarkdown(hostile);
    expect(html).not.toMatch(/<img|<script/i);
    // The image becomes a plain link to its address (nothing is fetched); it is the only link.
    expect(html.match(/<a /g)).toHaveLength(1);
    expect(html).toContain('<a href="https://example.com/track.png"');
    expect(html).not.toMatch(/href="(javascript|data)/i);
    expect(html).toContain('&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;');
    expect(html).toContain('&lt;script&gt;');
  });

  it('keeps http(s) links, opened without an opener', () => {
    const html = renderMarkdown('[site](https://example.com/a)');
    expect(html).toContain(
      '<a href="https://example.com/a" target="_blank" rel="noopener noreferrer nofollow">site</a>',
    );
  });
});
