/**
 * Rendering a chat template (Jinja, from a model file) within bounds.
 *
 * A template is code from the file, run synchronously on the caller's thread (the CLI's event loop,
 * the page's worker). @huggingface/jinja has no eval and no prototype access, but nothing stops
 * `range(10**9)`, loops in loops, or a string doubled until the heap gives out. So rendering runs in
 * a subclass of its Interpreter that charges every evaluated node (and every loop item) against a
 * step budget, charges every string character and array item it creates against a size budget,
 * checks the clock every few hundred steps, and looks at the inputs of the few operations that can
 * build something much bigger than what they are given (join, replace, indent, tojson, split,
 * printing a nested list) *before* they run. `range` is replaced by one that refuses a huge range
 * before allocating it. Exceeding any bound stops the render with EngineError('bad-template').
 *
 * The checks lean on the interpreter's AST node names and on it calling `evaluate` for each child
 * node (true of @huggingface/jinja 0.5); chat-template.test.ts pins both.
 */
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { EngineError } from './errors';

/** What a template may cost. Real chat templates use a few thousand steps and output ~ the messages. */
export interface TemplateLimits {
  /** Template source length, in characters. */
  templateChars: number;
  /** Evaluated nodes plus loop items. */
  steps: number;
  /** Wall-clock time, in milliseconds (a backstop: steps should end a runaway long before). */
  ms: number;
  /** The rendered text, what loops have printed so far, and any one string, in characters. */
  outputChars: number;
  /** Characters of all strings plus items of all lists the template creates, together. */
  createdCells: number;
  /** Items in any one list (range(), split(), ...). */
  listItems: number;
}

export const TEMPLATE_LIMITS: Readonly<TemplateLimits> = Object.freeze({
  templateChars: 1 << 20,
  steps: 200_000,
  ms: 1000,
  outputChars: 4 << 20,
  createdCells: 32 << 20,
  listItems: 1 << 16,
});

/** Longest piece of the interpreter's own error message we repeat (it can quote the template). */
const MAX_QUOTED_ERROR = 300;

type Node = Parameters<Interpreter['evaluate']>[0] & { type: string };
type Value = ReturnType<Interpreter['evaluate']>;
type Scope = Parameters<Interpreter['evaluate']>[1];

/** AST fields used here, read loosely (the package exports no AST types). */
interface Fields {
  type: string;
  body?: Node[];
  alternate?: Node[];
  defaultBlock?: Node[];
  operand?: Node;
  filter?: Fields;
  callee?: Fields;
  args?: Fields[];
  object?: Node;
  property?: Fields;
  computed?: boolean;
  operator?: { value: string };
  left?: Node;
  right?: Node;
  iterable?: Fields;
  lhs?: Node;
  argument?: Node;
  key?: { value: string };
  value?: unknown;
}

const fields = (n: unknown) => n as Fields;
const asNode = (n: unknown) => n as Node;

function isString(v: Value): v is Value & { value: string } {
  return v.type === 'StringValue';
}
function isList(v: Value): v is Value & { value: Value[] } {
  return v.type === 'ArrayValue' || v.type === 'TupleValue';
}
function isMapping(v: Value): v is Value & { value: Map<string, Value> } {
  return v.type === 'ObjectValue' || v.type === 'NamespaceValue' || v.type === 'KeywordArgumentsValue';
}
function intOf(v: Value | undefined): number | undefined {
  return v && v.type === 'IntegerValue' ? (v.value as number) : undefined;
}

/** Named after the template's source, so the user knows which file (and key) to fix. */
export function badTemplate(source: string, message: string, cause?: unknown): EngineError {
  return new EngineError('bad-template', `the chat template (${source}) ${message}`, { cause });
}

/**
 * Render `template` with `context` (plain data only: functions would be callable from the
 * template), or throw EngineError('bad-template') naming `source` and what went wrong.
 */
export function renderTemplate(
  template: string,
  source: string,
  context: Record<string, unknown>,
  limits: TemplateLimits = TEMPLATE_LIMITS,
): string {
  if (template.length > limits.templateChars) {
    throw badTemplate(
      source,
      `is ${template.length} characters long, over the limit of ${limits.templateChars}; ` +
        'real chat templates are a few kilobytes.',
    );
  }
  let program: Node;
  try {
    program = asNode(new Template(template).parsed);
  } catch (e) {
    throw badTemplate(source, `does not parse: ${quote(e)}`, e);
  }
  const env = new Environment();
  const interpreter = new BoundedInterpreter(env, source, limits, program);
  defineGlobals(env, interpreter);
  for (const [key, value] of Object.entries(context)) env.set(key, value);
  let out: Value;
  try {
    out = interpreter.run(program as Parameters<Interpreter['run']>[0]);
  } catch (e) {
    if (e instanceof EngineError) throw e;
    // Our own stop may surface wrapped (a RangeError from deep recursion is not ours).
    if (interpreter.stopped) throw interpreter.stopped;
    throw badTemplate(source, `failed: ${quote(e)}`, e);
  }
  if (interpreter.stopped) throw interpreter.stopped;
  const text = String(out.value);
  if (text.length > limits.outputChars) {
    throw interpreter.stop(`rendered ${text.length} characters`, `the output limit of ${limits.outputChars}`);
  }
  return text;
}

function quote(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.length > MAX_QUOTED_ERROR ? `${m.slice(0, MAX_QUOTED_ERROR)}…` : m;
}

/** The globals @huggingface/jinja's Template defines, with `range` bounded. */
function defineGlobals(env: Environment, interpreter: BoundedInterpreter) {
  env.set('false', false);
  env.set('true', true);
  env.set('none', null);
  env.set('False', false);
  env.set('True', true);
  env.set('None', null);
  env.set('raise_exception', (message: unknown) => {
    throw new Error(`raise_exception: ${String(message)}`);
  });
  env.set('range', (a: unknown, b?: unknown, c?: unknown) => interpreter.range(a, b, c));
  env.set('strftime_now', (format: unknown) => strftimeNow(String(format)));
}

const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];

/** Python's strftime for the codes chat templates use (Llama 3.2: "%d %b %Y"), English names. */
function strftimeNow(format: string): string {
  const d = new Date();
  const pad = (n: number) => String(n).padStart(2, '0');
  return format.replace(/%[YmdbBHM%]/g, (code) => {
    switch (code) {
      case '%Y':
        return String(d.getFullYear());
      case '%m':
        return pad(d.getMonth() + 1);
      case '%d':
        return pad(d.getDate());
      case '%b':
        return MONTHS[d.getMonth()].slice(0, 3);
      case '%B':
        return MONTHS[d.getMonth()];
      case '%H':
        return pad(d.getHours());
      case '%M':
        return pad(d.getMinutes());
      default:
        return '%';
    }
  });
}

/** Filters whose output can be far bigger than their inputs. */
const GROWING_FILTERS = new Set(['join', 'replace', 'indent', 'tojson', 'string']);
/** String methods likewise (replace), or that make one list item per match (split). */
const GROWING_METHODS = new Set(['replace', 'split']);
/** Nodes whose value is the text their own blocks printed. */
const STATEMENTS = new Set(['For', 'If', 'Set', 'Macro', 'CallStatement', 'FilterStatement', 'Program']);
/** How often (in steps) the clock is read. */
const CLOCK_EVERY = 256;

class BoundedInterpreter extends Interpreter {
  stopped: EngineError | undefined;
  private steps = 0;
  private cells = 0;
  /** Characters printed by expressions so far: a loop's output grows by these, and is checked as it grows. */
  private printedChars = 0;
  private readonly deadline: number;
  /** Strings and lists already charged (a variable read returns the same object again). */
  private readonly charged = new WeakSet<object>();
  /** Children we evaluated ahead of their parent to check its inputs; handed over once. */
  private readonly ready = new Map<object, Value>();
  /** Expression nodes whose value a block prints (and so stringifies). */
  private readonly printed = new Set<object>();

  constructor(
    env: Environment,
    private readonly source: string,
    private readonly limits: TemplateLimits,
    program: Node,
  ) {
    super(env);
    this.deadline = Date.now() + limits.ms;
    markPrinted(program, this.printed);
  }

  /** Record the first bound exceeded, and the error to throw. */
  stop(what: string, bound: string): EngineError {
    this.stopped ??= badTemplate(
      this.source,
      `${what}, over ${bound}; it is a runaway or hostile template. ` +
        'Use a model file with a normal chat template, or complete text without the chat format.',
    );
    return this.stopped;
  }

  range(a: unknown, b?: unknown, c?: unknown): number[] {
    const [start, stop, step] = b === undefined ? [0, a, 1] : [a, b, c ?? 1];
    for (const x of [start, stop, step]) {
      if (typeof x !== 'number' || !Number.isSafeInteger(x)) throw new Error('range() takes integers');
    }
    const [s, e, d] = [start as number, stop as number, step as number];
    if (d === 0) throw new Error('range() step must not be zero');
    const n = Math.max(0, Math.ceil((e - s) / d));
    if (n > this.limits.listItems) {
      throw this.stop(`asked for range() of ${n} numbers`, `the list limit of ${this.limits.listItems}`);
    }
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = s + i * d;
    return out;
  }

  override evaluate(statement: Node | undefined, environment: Scope): Value {
    if (statement) {
      const given = this.ready.get(statement);
      if (given !== undefined) {
        this.ready.delete(statement);
        return given;
      }
    }
    if (this.stopped) throw this.stopped;
    this.charge(1);
    if (!statement) return super.evaluate(statement, environment);
    const node = fields(statement);
    const early: object[] = [];
    let value: Value;
    try {
      switch (node.type) {
        case 'FilterStatement':
          return this.filterStatement(node, environment);
        case 'For':
          this.checkFor(node, environment, early);
          break;
        case 'FilterExpression':
          this.checkFilter(node, environment, early);
          break;
        case 'CallExpression':
          this.checkCall(node, environment, early);
          break;
        case 'BinaryExpression':
          this.checkConcat(node, environment, early);
          break;
      }
      value = super.evaluate(statement, environment);
    } finally {
      for (const n of early) this.ready.delete(n);
    }
    this.account(value);
    if (this.printed.has(statement)) this.countPrinted(node, value);
    return value;
  }

  private charge(steps: number) {
    this.steps += steps;
    if (this.steps > this.limits.steps) {
      throw this.stop(`ran more than ${this.limits.steps} steps`, `the step limit of ${this.limits.steps}`);
    }
    if (this.steps % CLOCK_EVERY < steps && Date.now() > this.deadline) {
      throw this.stop(`ran for more than ${this.limits.ms} ms`, `the time limit of ${this.limits.ms} ms`);
    }
  }

  /** Charge what a node created: new strings by length, new lists by items. */
  private account(v: Value) {
    let size: number;
    if (isString(v)) {
      size = v.value.length;
      if (size > this.limits.outputChars) {
        throw this.stop(
          `built a string of ${size} characters`,
          `the output limit of ${this.limits.outputChars}`,
        );
      }
    } else if (isList(v)) {
      size = v.value.length;
      if (size > this.limits.listItems) {
        throw this.stop(`built a list of ${size} items`, `the list limit of ${this.limits.listItems}`);
      }
    } else {
      return;
    }
    if (this.charged.has(v)) return;
    this.charged.add(v);
    this.cells += size;
    if (this.cells > this.limits.createdCells) {
      throw this.stop(
        `created more than ${this.limits.createdCells} characters and list items in all`,
        `the size limit of ${this.limits.createdCells}`,
      );
    }
  }

  /**
   * Text a block is about to print. Statements (a loop, an if) return what their own expressions
   * printed, and a macro call what its body printed: those are counted where they were printed.
   */
  private countPrinted(node: Fields, value: Value) {
    if (isList(value)) {
      this.expectAtMost(printedSize(value, 'text', 0, this.limits.outputChars), 'a printed list');
    }
    if (!isString(value) || STATEMENTS.has(node.type) || node.type === 'CallExpression') return;
    this.printedChars += value.value.length;
    if (this.printedChars > this.limits.outputChars) {
      throw this.stop(
        `printed more than ${this.limits.outputChars} characters`,
        `the output limit of ${this.limits.outputChars}`,
      );
    }
  }

  private expectAtMost(size: number, what: string) {
    if (size > this.limits.outputChars) {
      throw this.stop(
        `would build ${what} of more than ${this.limits.outputChars} characters`,
        `the output limit of ${this.limits.outputChars}`,
      );
    }
  }

  /** Evaluate `node` now and hand the value to the parent's own evaluation later. */
  private early(node: Node, env: Scope, list: object[]): Value {
    const v = this.evaluate(node, env);
    this.ready.set(node, v);
    list.push(node);
    return v;
  }

  /** Arguments as the interpreter will see them: positional (spreads expanded), then keywords. */
  private earlyArgs(args: Fields[], env: Scope, list: object[]): [Value[], Map<string, Value>] {
    const positional: Value[] = [];
    const keywords = new Map<string, Value>();
    for (const a of args) {
      if (a.type === 'SpreadExpression') {
        const v = this.early(asNode(a.argument), env, list);
        if (isList(v)) positional.push(...v.value);
      } else if (a.type !== 'KeywordArgumentExpression' && a.type !== 'KeywordSpreadExpression') {
        positional.push(this.early(asNode(a), env, list));
      }
    }
    for (const a of args) {
      if (a.type === 'KeywordArgumentExpression') {
        keywords.set(a.key?.value ?? '', this.early(asNode(a.value), env, list));
      } else if (a.type === 'KeywordSpreadExpression') {
        const v = this.early(asNode(a.argument), env, list);
        if (isMapping(v)) for (const [k, x] of v.value) keywords.set(k, x);
      }
    }
    return [positional, keywords];
  }

  /** A loop costs a step per item even when its body is empty. */
  private checkFor(node: Fields, env: Scope, list: object[]) {
    const iterable = node.iterable;
    if (!iterable) return;
    const expr = iterable.type === 'SelectExpression' ? asNode(iterable.lhs) : asNode(iterable);
    const v = this.early(expr, env, list);
    if (isList(v)) this.charge(v.value.length);
    else if (isMapping(v)) this.charge(v.value.size);
  }

  private checkFilter(node: Fields, env: Scope, list: object[]) {
    const filter = node.filter;
    if (!filter || !node.operand) return;
    const name = filter.type === 'Identifier' ? filter.value : filter.callee?.value;
    if (typeof name !== 'string' || !GROWING_FILTERS.has(name)) return;
    const operand = this.early(node.operand, env, list);
    const [args, kw] =
      filter.type === 'CallExpression' ? this.earlyArgs(filter.args ?? [], env, list) : [[], new Map()];
    this.checkGrowth(name, operand, args, kw);
  }

  private checkCall(node: Fields, env: Scope, list: object[]) {
    const callee = node.callee;
    if (callee?.type !== 'MemberExpression' || !callee.object) return;
    const property = callee.property;
    const name = callee.computed
      ? property?.type === 'StringLiteral'
        ? property.value
        : undefined
      : property?.value;
    if (typeof name !== 'string' || !GROWING_METHODS.has(name)) return;
    // The interpreter evaluates the arguments before the callee.
    const [args, kw] = this.earlyArgs(node.args ?? [], env, list);
    const object = this.early(callee.object, env, list);
    if (isString(object)) this.checkGrowth(name, object, args, kw);
  }

  /** `~` and `+` turn a list into text with JavaScript's toString, nested lists included. */
  private checkConcat(node: Fields, env: Scope, list: object[]) {
    const op = node.operator?.value;
    if ((op !== '~' && op !== '+') || !node.left || !node.right) return;
    const left = this.early(node.left, env, list);
    const right = this.early(node.right, env, list);
    if (op === '+' && isList(left) === isList(right)) return; // list + list concatenates
    let size = 0;
    for (const v of [left, right]) size += printedSize(v, 'text', 0, this.limits.outputChars - size);
    this.expectAtMost(size, 'a joined text');
  }

  /** Upper bound of a growing operation's output, from its inputs, before it runs. */
  private checkGrowth(name: string, operand: Value, args: Value[], kw: Map<string, Value>) {
    const limit = this.limits.outputChars;
    const text = isString(operand) ? operand.value : undefined;
    switch (name) {
      case 'tojson': {
        const indent = intOf(kw.get('indent')) ?? 0;
        const ascii = kw.get('ensure_ascii')?.value === true;
        this.expectAtMost(
          printedSize(operand, ascii ? 'ascii-json' : 'json', indent, limit),
          'a tojson result',
        );
        return;
      }
      case 'string':
        if (!isString(operand))
          this.expectAtMost(printedSize(operand, 'json', 0, limit), 'a string() result');
        return;
      case 'join': {
        const sep = args[0] ?? kw.get('separator');
        const sepLength = sep && isString(sep) ? sep.value.length : 0;
        let size: number;
        let items: number;
        if (text !== undefined) {
          size = text.length;
          items = text.length;
        } else if (isList(operand)) {
          items = operand.value.length;
          size = 0;
          for (const x of operand.value) size += printedSize(x, 'text', 0, limit - size);
        } else {
          return;
        }
        this.expectAtMost(size + Math.max(0, items - 1) * sepLength, 'a join() result');
        return;
      }
      case 'indent': {
        if (text === undefined) return;
        const width = args[0] ?? kw.get('width');
        const perLine =
          width === undefined ? 4 : (intOf(width) ?? (isString(width) ? width.value.length : 0));
        this.expectAtMost(
          text.length + countOf(text, '\n', limit) * Math.max(0, perLine),
          'an indent() result',
        );
        return;
      }
      case 'replace': {
        const [from, to] = [args[0], args[1]];
        if (text === undefined || !from || !to || !isString(from) || !isString(to)) return;
        const grow = to.value.length - from.value.length;
        if (grow <= 0) return;
        let count = from.value.length === 0 ? text.length + 1 : countOf(text, from.value, limit);
        const most = intOf(args[2] ?? kw.get('count'));
        if (most !== undefined && most >= 0) count = Math.min(count, most);
        this.expectAtMost(text.length + count * grow, 'a replace() result');
        return;
      }
      case 'split': {
        if (text === undefined) return;
        const sep = args[0];
        const parts =
          sep && isString(sep) && sep.value.length > 0
            ? countOf(text, sep.value, this.limits.listItems) + 1
            : countWords(text, this.limits.listItems);
        if (parts > this.limits.listItems) {
          throw this.stop(
            `would split a string into more than ${this.limits.listItems} parts`,
            `the list limit of ${this.limits.listItems}`,
          );
        }
        return;
      }
    }
  }

  /**
   * `{% filter f %}…{% endfilter %}`: the interpreter renders the body, then applies f. We do the
   * same through a FilterExpression so that f's inputs are checked like any other filter's.
   */
  private filterStatement(node: Fields, env: Scope): Value {
    const rendered = this.evaluate(asNode({ type: 'Program', body: node.body ?? [] }), env);
    const operand = asNode({ type: 'StringLiteral', value: '' });
    this.ready.set(operand, rendered);
    try {
      return this.evaluate(asNode({ type: 'FilterExpression', operand, filter: node.filter }), env);
    } finally {
      this.ready.delete(operand);
    }
  }
}

/** Every statement directly inside a block: the interpreter prints its value. */
function markPrinted(program: Node, printed: Set<object>) {
  const stack: unknown[] = [program];
  const seen = new Set<unknown>();
  while (stack.length > 0) {
    const n = stack.pop();
    if (!n || typeof n !== 'object' || seen.has(n)) continue;
    seen.add(n);
    const f = n as Record<string, unknown>;
    for (const key of ['body', 'alternate', 'defaultBlock']) {
      const block = f[key];
      if (Array.isArray(block)) for (const s of block) printed.add(s);
    }
    for (const v of Object.values(f)) {
      if (Array.isArray(v)) stack.push(...v);
      else if (v && typeof v === 'object') stack.push(v);
    }
  }
}

/** Occurrences of `what` in `text`, counting no further than `most + 1`. */
function countOf(text: string, what: string, most: number): number {
  let n = 0;
  for (let i = text.indexOf(what); i >= 0 && n <= most; i = text.indexOf(what, i + what.length)) n++;
  return n;
}

function countWords(text: string, most: number): number {
  let n = 0;
  const re = /\S+/g;
  while (re.exec(text) !== null && n <= most) n++;
  return n;
}

/**
 * Characters `v` turns into (at most; stops counting past `limit`), as JavaScript's toString prints
 * it ('text': lists as "a,b", mappings as "[object Map]") or as tojson does (quoted and escaped).
 * Walks shared sublists once per reference, as printing does: a list of 30 nested pairs is 2^30.
 */
function printedSize(v: Value, mode: 'text' | 'json' | 'ascii-json', indent: number, limit: number): number {
  let size = 0;
  const stack: [Value, number][] = [[v, 0]];
  while (stack.length > 0 && size <= limit) {
    const [x, depth] = stack.pop() as [Value, number];
    const pad = indent > 0 ? 1 + indent * (depth + 1) : 0;
    if (isString(x)) {
      size += mode === 'text' ? x.value.length : jsonLength(x.value, mode === 'ascii-json', limit - size);
    } else if (isList(x)) {
      size += 2 + x.value.length * (2 + pad);
      for (const item of x.value) stack.push([item, depth + 1]);
    } else if (isMapping(x)) {
      if (mode === 'text') {
        size += 15; // "[object Map]"
        continue;
      }
      size += 2 + x.value.size * (4 + pad);
      for (const [key, item] of x.value) {
        size += jsonLength(key, mode === 'ascii-json', limit - size);
        stack.push([item, depth + 1]);
      }
    } else {
      size += 24; // a number, boolean, null or undefined
    }
  }
  return size;
}

/** Length of JSON.stringify(s) (with \uXXXX for non-ASCII when `ascii`), counting no further than `limit`. */
function jsonLength(s: string, ascii: boolean, limit: number): number {
  let n = 2;
  for (let i = 0; i < s.length && n <= limit; i++) {
    const c = s.charCodeAt(i);
    n += c < 0x20 ? 6 : c === 0x22 || c === 0x5c ? 2 : ascii && c >= 0x7f ? 6 : 1;
  }
  return n;
}
