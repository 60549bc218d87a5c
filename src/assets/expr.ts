// The interlock predicate language (docs/safety.md, "The condition language"): a tokenizer, a recursive-descent parser with a
// type check, a printer, and a compiler to a closure tree. Owns the syntax and its meaning; must
// never use eval or Function, never throw anything but ParseError on any input string, and never
// let an undefined result read as "false" (a deny condition that cannot be evaluated trips).
//
//   expr    := or
//   or      := and ('or' and)*
//   and     := not ('and' not)*
//   not     := 'not' not | cmp
//   cmp     := sum (('<' | '<=' | '>' | '>=' | '==' | '!=') sum)?      (no chaining: a < b < c is an error)
//   sum     := prod (('+' | '-') prod)*
//   prod    := unary (('*' | '/') unary)*
//   unary   := '-' unary | primary
//   primary := NUMBER | 'true' | 'false' | POINT | '(' expr ')'
//   POINT   := [asset '/'] name ('.' name)*    e.g. tank1.level, plc1/tank1.level
//
// Values are engineering units. A point is a number; where a boolean is expected (and/or/not,
// == true) a point reads as true when it is non-zero, so `pump1.run and tank1.low_alarm` works
// for coils and discrete inputs.

export type ParseErrorCode = 'EXPR_SYNTAX' | 'EXPR_TYPE' | 'EXPR_TOO_COMPLEX' | 'EXPR_UNKNOWN_POINT';

export class ParseError extends Error {
  readonly code: ParseErrorCode;
  /** 1-based, within the expression text. */
  readonly line: number;
  readonly col: number;
  /** The problem without the position, for messages that place it themselves (file:line:col). */
  readonly problem: string;
  constructor(code: ParseErrorCode, line: number, col: number, problem: string) {
    super(`${line}:${col}: ${problem}`);
    this.name = 'ParseError';
    this.code = code;
    this.line = line;
    this.col = col;
    this.problem = problem;
  }
}

/** A point reference as written. `asset` is undefined when the name is unqualified. */
export interface PointRef {
  asset?: string;
  name: string;
}

export type CmpOp = '<' | '<=' | '>' | '>=' | '==' | '!=';
export type ArithOp = '+' | '-' | '*' | '/';

interface At {
  line: number;
  col: number;
}

export type Expr =
  | ({ kind: 'num'; value: number } & At)
  | ({ kind: 'bool'; value: boolean } & At)
  | ({ kind: 'point'; ref: PointRef } & At)
  | ({ kind: 'neg'; operand: Expr } & At)
  | ({ kind: 'not'; operand: Expr } & At)
  | ({ kind: 'arith'; op: ArithOp; left: Expr; right: Expr } & At)
  | ({ kind: 'cmp'; op: CmpOp; left: Expr; right: Expr } & At)
  | ({ kind: 'and' | 'or'; left: Expr; right: Expr } & At);

/** Bounds so a hostile or mistyped source cannot exhaust the stack or the build. */
export const MAX_EXPR_LENGTH = 4096;
export const MAX_EXPR_DEPTH = 64;

// ---------------------------------------------------------------------------------------------
// Tokens

type TokKind = 'num' | 'point' | 'kw' | 'op' | '(' | ')' | 'eof';
interface Token extends At {
  kind: TokKind;
  text: string;
  value?: number;
  ref?: PointRef;
}

const KEYWORDS = new Set(['and', 'or', 'not', 'true', 'false']);
const isIdStart = (c: string) => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_';
const isDigit = (c: string) => c >= '0' && c <= '9';
const isIdChar = (c: string) => isIdStart(c) || isDigit(c);

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const n = src.length;
  const fail = (at: number, problem: string): never => {
    throw new ParseError('EXPR_SYNTAX', line, at - lineStart + 1, problem);
  };
  /** One dotted name starting at `start`; returns the index after it. */
  const dotted = (start: number): number => {
    let j = start;
    for (;;) {
      if (!isIdStart(src[j] ?? '')) fail(j, j === start ? 'expected a name' : `a point name segment must start with a letter or '_' after '.'`);
      while (j < n && isIdChar(src[j]!)) j++;
      if (src[j] === '.') {
        j++;
        continue;
      }
      return j;
    }
  };
  while (i < n) {
    const c = src[i]!;
    if (c === '\n') {
      i++;
      line++;
      lineStart = i;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r') {
      i++;
      continue;
    }
    const at: At = { line, col: i - lineStart + 1 };
    if (isDigit(c)) {
      const m = /^(?:\d+)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(src.slice(i, i + 64))!;
      const text = m[0];
      if (isIdChar(src[i + text.length] ?? '') || src[i + text.length] === '.') {
        fail(i + text.length, `malformed number '${src.slice(i, i + text.length + 1)}'`);
      }
      const value = Number(text);
      if (!Number.isFinite(value)) fail(i, `number '${text}' is out of range`);
      out.push({ kind: 'num', text, value, ...at });
      i += text.length;
      continue;
    }
    if (isIdStart(c)) {
      let j = dotted(i);
      const first = src.slice(i, j);
      if (KEYWORDS.has(first)) {
        out.push({ kind: 'kw', text: first, ...at });
        i = j;
        continue;
      }
      // `plc1/tank1.level`: an asset-qualified point, written without spaces around '/'. With
      // spaces (or a digit after it), '/' divides: `tank1.level / 2`.
      if (src[j] === '/' && isIdStart(src[j + 1] ?? '')) {
        const k = dotted(j + 1);
        const name = src.slice(j + 1, k);
        if (KEYWORDS.has(name)) fail(j + 1, `'${name}' is a keyword, not a point name`);
        out.push({ kind: 'point', text: src.slice(i, k), ref: { asset: first, name }, ...at });
        i = k;
        continue;
      }
      out.push({ kind: 'point', text: first, ref: { name: first }, ...at });
      i = j;
      continue;
    }
    const two = src.slice(i, i + 2);
    if (two === '<=' || two === '>=' || two === '==' || two === '!=') {
      out.push({ kind: 'op', text: two, ...at });
      i += 2;
      continue;
    }
    if (two === '&&' || two === '||') fail(i, `use '${two === '&&' ? 'and' : 'or'}' instead of '${two}'`);
    if (c === '<' || c === '>' || c === '+' || c === '-' || c === '*' || c === '/') {
      out.push({ kind: 'op', text: c, ...at });
      i++;
      continue;
    }
    if (c === '(' || c === ')') {
      out.push({ kind: c, text: c, ...at });
      i++;
      continue;
    }
    if (c === '=') fail(i, `use '==' to compare ('=' alone is not an operator)`);
    if (c === '!') fail(i, `use 'not' instead of '!'`);
    const shown = /[\x20-\x7e]/.test(c) ? `'${c}'` : `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
    fail(i, `unexpected character ${shown}`);
  }
  out.push({ kind: 'eof', text: 'end of expression', line, col: n - lineStart + 1 });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Parser

const CMP_OPS: ReadonlySet<string> = new Set(['<', '<=', '>', '>=', '==', '!=']);

class Parser {
  private pos = 0;
  private depth = 0;
  constructor(private readonly toks: Token[]) {}

  private peek(): Token {
    return this.toks[this.pos]!;
  }
  private next(): Token {
    return this.toks[this.pos++]!;
  }
  private isKw(word: string): boolean {
    const t = this.peek();
    return t.kind === 'kw' && t.text === word;
  }
  private isOp(...ops: string[]): boolean {
    const t = this.peek();
    return t.kind === 'op' && ops.includes(t.text);
  }
  private fail(t: Token, problem: string): never {
    throw new ParseError('EXPR_SYNTAX', t.line, t.col, problem);
  }
  private enter(t: Token): void {
    if (++this.depth > MAX_EXPR_DEPTH) throw new ParseError('EXPR_TOO_COMPLEX', t.line, t.col, `nested deeper than ${MAX_EXPR_DEPTH} levels`);
  }

  parse(): Expr {
    const first = this.peek();
    if (first.kind === 'eof') this.fail(first, 'expression is empty');
    const e = this.or();
    const t = this.peek();
    if (t.kind !== 'eof') this.fail(t, t.kind === ')' ? `unmatched ')'` : `expected an operator or the end, found '${t.text}'`);
    return e;
  }

  private or(): Expr {
    let left = this.and();
    while (this.isKw('or')) {
      const t = this.next();
      left = { kind: 'or', left, right: this.and(), line: t.line, col: t.col };
    }
    return left;
  }

  private and(): Expr {
    let left = this.not();
    while (this.isKw('and')) {
      const t = this.next();
      left = { kind: 'and', left, right: this.not(), line: t.line, col: t.col };
    }
    return left;
  }

  private not(): Expr {
    if (this.isKw('not')) {
      const t = this.next();
      this.enter(t);
      const operand = this.not();
      this.depth--;
      return { kind: 'not', operand, line: t.line, col: t.col };
    }
    return this.cmp();
  }

  private cmp(): Expr {
    const left = this.sum();
    if (!this.isOp(...CMP_OPS)) return left;
    const t = this.next();
    const right = this.sum();
    if (this.isOp(...CMP_OPS)) this.fail(this.peek(), `comparisons do not chain: write 'a < b and b < c'`);
    return { kind: 'cmp', op: t.text as CmpOp, left, right, line: t.line, col: t.col };
  }

  private sum(): Expr {
    let left = this.prod();
    while (this.isOp('+', '-')) {
      const t = this.next();
      left = { kind: 'arith', op: t.text as ArithOp, left, right: this.prod(), line: t.line, col: t.col };
    }
    return left;
  }

  private prod(): Expr {
    let left = this.unary();
    while (this.isOp('*', '/')) {
      const t = this.next();
      left = { kind: 'arith', op: t.text as ArithOp, left, right: this.unary(), line: t.line, col: t.col };
    }
    return left;
  }

  private unary(): Expr {
    if (this.isOp('-')) {
      const t = this.next();
      this.enter(t);
      const operand = this.unary();
      this.depth--;
      return { kind: 'neg', operand, line: t.line, col: t.col };
    }
    return this.primary();
  }

  private primary(): Expr {
    const t = this.next();
    switch (t.kind) {
      case 'num':
        return { kind: 'num', value: t.value!, line: t.line, col: t.col };
      case 'point':
        return { kind: 'point', ref: t.ref!, line: t.line, col: t.col };
      case 'kw':
        if (t.text === 'true' || t.text === 'false') return { kind: 'bool', value: t.text === 'true', line: t.line, col: t.col };
        return this.fail(t, `expected a value, found '${t.text}'`);
      case '(': {
        this.enter(t);
        const inner = this.or();
        this.depth--;
        const close = this.next();
        if (close.kind !== ')') this.fail(close, `expected ')' to close the '(' at ${t.line}:${t.col}, found '${close.text}'`);
        return inner;
      }
      case 'eof':
        return this.fail(t, 'expression ends where a value is expected');
      default:
        return this.fail(t, `expected a value, found '${t.text}'`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Type check: numbers and booleans never mix silently (`tank1.level + true`, `1 and 2` are errors).

type Ty = 'num' | 'bool' | 'point';

function typeOf(e: Expr): Ty {
  const want = (sub: Expr, ty: 'num' | 'bool', ctx: string): void => {
    const t = typeOf(sub);
    if (t !== 'point' && t !== ty) {
      throw new ParseError('EXPR_TYPE', sub.line, sub.col, `${ctx} needs a ${ty === 'num' ? 'number' : 'boolean'}, found a ${t === 'num' ? 'number' : 'boolean'}`);
    }
  };
  switch (e.kind) {
    case 'num':
      return 'num';
    case 'bool':
      return 'bool';
    case 'point':
      return 'point';
    case 'neg':
      want(e.operand, 'num', `'-'`);
      return 'num';
    case 'not':
      want(e.operand, 'bool', `'not'`);
      return 'bool';
    case 'arith':
      want(e.left, 'num', `'${e.op}'`);
      want(e.right, 'num', `'${e.op}'`);
      return 'num';
    case 'and':
    case 'or':
      want(e.left, 'bool', `'${e.kind}'`);
      want(e.right, 'bool', `'${e.kind}'`);
      return 'bool';
    case 'cmp': {
      if (e.op === '==' || e.op === '!=') {
        const l = typeOf(e.left);
        const r = typeOf(e.right);
        if (l !== 'point' && r !== 'point' && l !== r) throw new ParseError('EXPR_TYPE', e.line, e.col, `'${e.op}' compares a number with a boolean`);
        return 'bool';
      }
      want(e.left, 'num', `'${e.op}'`);
      want(e.right, 'num', `'${e.op}'`);
      return 'bool';
    }
  }
}

/**
 * Parses a predicate. Throws ParseError (syntax, type, or size) with a line and column within
 * `src`; nothing else. The result is a boolean expression (or a single point read as a boolean).
 */
export function parseExpr(src: string): Expr {
  if (typeof src !== 'string') throw new ParseError('EXPR_SYNTAX', 1, 1, 'expression must be a string');
  if (src.length > MAX_EXPR_LENGTH) throw new ParseError('EXPR_TOO_COMPLEX', 1, 1, `expression is longer than ${MAX_EXPR_LENGTH} characters`);
  const e = new Parser(tokenize(src)).parse();
  if (typeOf(e) === 'num') throw new ParseError('EXPR_TYPE', e.line, e.col, `a condition must be true or false; this is a number (compare it: '... > 0')`);
  return e;
}

/**
 * Parses a value: a number or a condition (plant logic sets a point to either, docs/simulator.md
 * "PLC logic"). Same syntax, bounds and errors as parseExpr, without requiring a boolean.
 */
export function parseValue(src: string): Expr {
  if (typeof src !== 'string') throw new ParseError('EXPR_SYNTAX', 1, 1, 'expression must be a string');
  if (src.length > MAX_EXPR_LENGTH) throw new ParseError('EXPR_TOO_COMPLEX', 1, 1, `expression is longer than ${MAX_EXPR_LENGTH} characters`);
  return new Parser(tokenize(src)).parse();
}

/** Every point the expression names, in first-use order, without repeats. */
export function pointsOf(e: Expr): PointRef[] {
  const out: PointRef[] = [];
  const seen = new Set<string>();
  const walk = (x: Expr): void => {
    switch (x.kind) {
      case 'point': {
        const key = `${x.ref.asset ?? ''}/${x.ref.name}`;
        if (!seen.has(key)) {
          seen.add(key);
          out.push(x.ref);
        }
        return;
      }
      case 'neg':
      case 'not':
        walk(x.operand);
        return;
      case 'arith':
      case 'cmp':
      case 'and':
      case 'or':
        walk(x.left);
        walk(x.right);
        return;
      default:
        return;
    }
  };
  walk(e);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Printer: the canonical text of an expression (minimal parentheses). parse(print(e)) == e.

const PREC: Record<string, number> = { or: 1, and: 2, not: 3, cmp: 4, '+': 5, '-': 5, '*': 6, '/': 6, neg: 7 };

function precOf(e: Expr): number {
  switch (e.kind) {
    case 'or':
    case 'and':
    case 'not':
    case 'cmp':
    case 'neg':
      return PREC[e.kind]!;
    case 'arith':
      return PREC[e.op]!;
    default:
      return 8;
  }
}

export function printExpr(e: Expr): string {
  const wrap = (sub: Expr, min: number): string => {
    const s = printExpr(sub);
    return precOf(sub) < min ? `(${s})` : s;
  };
  switch (e.kind) {
    case 'num':
      return String(e.value);
    case 'bool':
      return e.value ? 'true' : 'false';
    case 'point':
      return e.ref.asset === undefined ? e.ref.name : `${e.ref.asset}/${e.ref.name}`;
    case 'neg':
      return `-${wrap(e.operand, PREC.neg!)}`;
    case 'not':
      return `not ${wrap(e.operand, PREC.not!)}`;
    case 'and':
    case 'or': {
      // Left-associative: an equal-precedence right operand needs parentheses to keep its shape.
      const p = PREC[e.kind]!;
      return `${wrap(e.left, p)} ${e.kind} ${wrap(e.right, p + 1)}`;
    }
    case 'arith': {
      const p = PREC[e.op]!;
      return `${wrap(e.left, p)} ${e.op} ${wrap(e.right, p + 1)}`;
    }
    case 'cmp':
      // Comparisons do not chain, so an operand that is itself a comparison is parenthesized.
      return `${wrap(e.left, PREC.cmp! + 1)} ${e.op} ${wrap(e.right, PREC.cmp! + 1)}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Compiler: a closure tree over a value array. Three-valued: 1 true, 0 false, NaN unknown.
// Unknown comes from a NaN input or a division by zero; `false and unknown` is false, `true or
// unknown` is true (Kleene), every other use of unknown stays unknown, and the interlock engine
// treats an unknown deny condition as tripped (fail closed).

export type Evaluator = (values: ArrayLike<number>) => number;

/** Maps a point reference to the index of its value in the array the evaluator is given. */
export type SlotResolver = (ref: PointRef, at: { line: number; col: number }) => number;

const truth = (v: number): number => (Number.isNaN(v) ? NaN : v !== 0 ? 1 : 0);

export function compileExpr(e: Expr, slotOf: SlotResolver): Evaluator {
  switch (e.kind) {
    case 'num': {
      const v = e.value;
      return () => v;
    }
    case 'bool': {
      const v = e.value ? 1 : 0;
      return () => v;
    }
    case 'point': {
      const slot = slotOf(e.ref, e);
      return (vals) => vals[slot]!;
    }
    case 'neg': {
      const f = compileExpr(e.operand, slotOf);
      return (vals) => -f(vals);
    }
    case 'not': {
      const f = compileExpr(e.operand, slotOf);
      return (vals) => {
        const v = truth(f(vals));
        return v === 1 ? 0 : v === 0 ? 1 : NaN;
      };
    }
    case 'and': {
      const l = compileExpr(e.left, slotOf);
      const r = compileExpr(e.right, slotOf);
      return (vals) => {
        const a = truth(l(vals));
        if (a === 0) return 0;
        const b = truth(r(vals));
        if (b === 0) return 0;
        return a === 1 && b === 1 ? 1 : NaN;
      };
    }
    case 'or': {
      const l = compileExpr(e.left, slotOf);
      const r = compileExpr(e.right, slotOf);
      return (vals) => {
        const a = truth(l(vals));
        if (a === 1) return 1;
        const b = truth(r(vals));
        if (b === 1) return 1;
        return a === 0 && b === 0 ? 0 : NaN;
      };
    }
    case 'arith':
      return compileArith(e.op, compileExpr(e.left, slotOf), compileExpr(e.right, slotOf));
    case 'cmp': {
      const l = compileExpr(e.left, slotOf);
      const r = compileExpr(e.right, slotOf);
      // `x == true` compares truth values; otherwise numbers compare as numbers.
      const boolish = e.left.kind === 'bool' || e.right.kind === 'bool' || isBoolExpr(e.left) || isBoolExpr(e.right);
      const L = boolish ? (v: ArrayLike<number>) => truth(l(v)) : l;
      const R = boolish ? (v: ArrayLike<number>) => truth(r(v)) : r;
      const cmp = CMP[e.op];
      return (vals) => {
        const a = L(vals);
        const b = R(vals);
        if (Number.isNaN(a) || Number.isNaN(b)) return NaN;
        return cmp(a, b) ? 1 : 0;
      };
    }
  }
}

function compileArith(op: ArithOp, l: Evaluator, r: Evaluator): Evaluator {
  switch (op) {
    case '+':
      return (vals) => l(vals) + r(vals);
    case '-':
      return (vals) => l(vals) - r(vals);
    case '*':
      return (vals) => l(vals) * r(vals);
    case '/':
      return (vals) => {
        const d = r(vals);
        return d === 0 ? NaN : l(vals) / d;
      };
  }
}

function isBoolExpr(e: Expr): boolean {
  return e.kind === 'not' || e.kind === 'and' || e.kind === 'or' || e.kind === 'cmp';
}

const CMP: Record<CmpOp, (a: number, b: number) => boolean> = {
  '<': (a, b) => a < b,
  '<=': (a, b) => a <= b,
  '>': (a, b) => a > b,
  '>=': (a, b) => a >= b,
  '==': (a, b) => a === b,
  '!=': (a, b) => a !== b,
};
