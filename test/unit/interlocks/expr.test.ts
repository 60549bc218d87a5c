import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_EXPR_DEPTH, ParseError, compileExpr, parseExpr, pointsOf, printExpr, type Expr, type PointRef } from '../../../src/assets/expr.js';

/** Evaluates `src` with the named point values; unknown names are NaN. */
function evalWith(src: string, values: Record<string, number>): number {
  const names: string[] = [];
  const f = compileExpr(parseExpr(src), (ref) => {
    const key = ref.asset === undefined ? ref.name : `${ref.asset}/${ref.name}`;
    let i = names.indexOf(key);
    if (i === -1) i = names.push(key) - 1;
    return i;
  });
  return f(names.map((n) => values[n] ?? NaN));
}

function parseError(src: string): ParseError {
  try {
    parseExpr(src);
  } catch (err) {
    if (err instanceof ParseError) return err;
    throw err;
  }
  throw new Error(`'${src}' parsed`);
}

/** The AST without positions, for structural comparison. */
function shape(e: Expr): unknown {
  const { line: _l, col: _c, ...rest } = e as Expr & Record<string, unknown>;
  const out: Record<string, unknown> = { ...rest };
  for (const k of ['operand', 'left', 'right'] as const) if (k in out) out[k] = shape(out[k] as Expr);
  return out;
}

describe('interlock expressions: meaning', () => {
  it('denies a pump start on a low tank: level below 10 and pump stopped', () => {
    const src = 'tank1.level < 10 and pump1.run == 0';
    expect(evalWith(src, { 'tank1.level': 5, 'pump1.run': 0 })).toBe(1);
    expect(evalWith(src, { 'tank1.level': 50, 'pump1.run': 0 })).toBe(0);
    expect(evalWith(src, { 'tank1.level': 5, 'pump1.run': 1 })).toBe(0);
  });

  it('follows the usual precedence: not < and < or, arithmetic before comparison', () => {
    expect(evalWith('not a or b and c', { a: 1, b: 1, c: 0 })).toBe(0);
    expect(evalWith('not a or b and c', { a: 0, b: 0, c: 0 })).toBe(1);
    expect(evalWith('a + b * 2 == 7', { a: 1, b: 3 })).toBe(1);
    expect(evalWith('(a + b) * 2 == 8', { a: 1, b: 3 })).toBe(1);
    expect(evalWith('a - b - c == 0', { a: 5, b: 3, c: 2 })).toBe(1);
    expect(evalWith('a / b / c == 1', { a: 8, b: 4, c: 2 })).toBe(1);
    expect(evalWith('-a * 2 < -5', { a: 3 })).toBe(1);
    expect(evalWith('not not a', { a: 7 })).toBe(1);
  });

  it('reads coils and discrete inputs as booleans where a boolean is expected', () => {
    expect(evalWith('pump1.run and tank1.low_alarm', { 'pump1.run': 1, 'tank1.low_alarm': 1 })).toBe(1);
    expect(evalWith('valve1.open == true', { 'valve1.open': 1 })).toBe(1);
    expect(evalWith('valve1.open != false', { 'valve1.open': 0 })).toBe(0);
    expect(evalWith('pump1.speed > 1200 or true', { 'pump1.speed': 0 })).toBe(1);
  });

  it('takes asset-qualified points and numbers with fractions and exponents', () => {
    expect(evalWith('plc1/tank1.level >= 1.5e1', { 'plc1/tank1.level': 15 })).toBe(1);
    expect(pointsOf(parseExpr('plc1/tank1.level < 2 and tank1.level / 2 > 1'))).toEqual<PointRef[]>([
      { asset: 'plc1', name: 'tank1.level' },
      { name: 'tank1.level' },
    ]);
  });

  it('never turns an unknown input or a division by zero into "false" (fail closed)', () => {
    expect(evalWith('tank1.level < 10', { 'tank1.level': NaN })).toBeNaN();
    expect(evalWith('a / b > 1', { a: 1, b: 0 })).toBeNaN();
    expect(evalWith('not (a < 1)', { a: NaN })).toBeNaN();
    // Kleene logic: the unknown side does not matter when the other side decides.
    expect(evalWith('a < 1 and b < 1', { a: 5, b: NaN })).toBe(0);
    expect(evalWith('a < 1 or b < 1', { a: 0, b: NaN })).toBe(1);
    expect(evalWith('a < 1 or b < 1', { a: 5, b: NaN })).toBeNaN();
  });
});

describe('interlock expressions: errors name line and column', () => {
  it.each([
    ['tank1.level = 10', 1, 13, "use '=='"],
    ['a < b < c', 1, 7, 'do not chain'],
    ['tank1.level < 10 &&  pump1.run', 1, 18, "use 'and'"],
    ['(a < 1', 1, 7, "expected ')'"],
    ['a < 1)', 1, 6, "unmatched ')'"],
    ['a <', 1, 4, 'ends where a value is expected'],
    ['', 1, 1, 'empty'],
    ['tank1. level > 1', 1, 7, 'must start with a letter'],
    ['a > 1 and\n  b # 2', 2, 5, "unexpected character '#'"],
    ['12abc > 1', 1, 3, 'malformed number'],
  ])('%j → %i:%i %s', (src, line, col, text) => {
    const err = parseError(src);
    expect(err.code).toBe('EXPR_SYNTAX');
    expect([err.line, err.col]).toEqual([line, col]);
    expect(err.problem).toContain(text);
    expect(err.message.startsWith(`${line}:${col}: `)).toBe(true);
  });

  it('refuses mixing numbers and booleans, and a condition that is a number', () => {
    expect(parseError('tank1.level + true > 1').code).toBe('EXPR_TYPE');
    expect(parseError('1 and a').code).toBe('EXPR_TYPE');
    expect(parseError('(a < 1) + 1 > 0').code).toBe('EXPR_TYPE');
    expect(parseError('1 == true').code).toBe('EXPR_TYPE');
    const num = parseError('tank1.level * 2');
    expect(num.code).toBe('EXPR_TYPE');
    expect(num.problem).toContain('must be true or false');
  });

  it('refuses nesting beyond the limit instead of exhausting the stack', () => {
    const deep = '('.repeat(MAX_EXPR_DEPTH + 1) + 'a' + ')'.repeat(MAX_EXPR_DEPTH + 1);
    expect(parseError(deep).code).toBe('EXPR_TOO_COMPLEX');
    expect(parseError('-'.repeat(200) + 'a > 1').code).toBe('EXPR_TOO_COMPLEX');
    expect(parseError('not '.repeat(200) + 'a').code).toBe('EXPR_TOO_COMPLEX');
    expect(parseError('a > ' + '1'.repeat(5000)).code).toBe('EXPR_TOO_COMPLEX');
  });
});

// ---- properties ----

const name = fc.stringMatching(/^[a-z_][a-z0-9_]{0,5}(\.[a-z_][a-z0-9_]{0,5}){0,2}$/).filter((s) => !['and', 'or', 'not', 'true', 'false'].includes(s.split('.')[0]!));
const point: fc.Arbitrary<Expr> = fc
  .record({ asset: fc.option(fc.constantFrom('plc1', 'plc_2', 'heat.loop'), { nil: undefined }), name })
  .map(({ asset, name }) => ({ kind: 'point', ref: asset === undefined ? { name } : { asset, name }, line: 0, col: 0 }) as Expr);
const num: fc.Arbitrary<Expr> = fc
  .oneof(fc.nat(100_000), fc.double({ min: 0, max: 1e30, noNaN: true, noDefaultInfinity: true }).map((d) => Math.abs(d)))
  .map((value) => ({ kind: 'num', value, line: 0, col: 0 }) as Expr);

const { numExpr, boolExpr } = fc.letrec<{ numExpr: Expr; boolExpr: Expr }>((tie) => ({
  numExpr: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    num,
    point,
    tie('numExpr').map((operand) => ({ kind: 'neg', operand, line: 0, col: 0 }) as Expr),
    fc
      .record({ op: fc.constantFrom('+', '-', '*', '/'), left: tie('numExpr'), right: tie('numExpr') })
      .map((r) => ({ kind: 'arith', ...r, line: 0, col: 0 }) as Expr),
  ),
  boolExpr: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.boolean().map((value) => ({ kind: 'bool', value, line: 0, col: 0 }) as Expr),
    point,
    tie('boolExpr').map((operand) => ({ kind: 'not', operand, line: 0, col: 0 }) as Expr),
    fc
      .record({ kind: fc.constantFrom('and', 'or'), left: tie('boolExpr'), right: tie('boolExpr') })
      .map((r) => ({ ...r, line: 0, col: 0 }) as Expr),
    fc
      .record({ op: fc.constantFrom('<', '<=', '>', '>=', '==', '!='), left: tie('numExpr'), right: tie('numExpr') })
      .map((r) => ({ kind: 'cmp', ...r, line: 0, col: 0 }) as Expr),
  ),
}));

describe('interlock expressions: properties', () => {
  it('printing any expression and parsing it back gives the same tree', () => {
    fc.assert(
      fc.property(boolExpr, (e) => {
        let parsed: Expr;
        try {
          parsed = parseExpr(printExpr(e));
        } catch (err) {
          // Generated trees may nest deeper than sources may: that refusal is the only one allowed.
          if (err instanceof ParseError && err.code === 'EXPR_TOO_COMPLEX') return;
          throw err;
        }
        expect(shape(parsed)).toEqual(shape(e));
      }),
      { numRuns: 500 },
    );
  });

  it('any string either parses or throws a ParseError with a position inside the text', () => {
    const alphabet = fc.constantFrom(...'ab1.0 ()<>=!+-*/\nandortfeslu_/x9#&|'.split(''), 'and', 'or', 'not', 'true', '==', 'plc1/');
    const text = fc.oneof(fc.string(), fc.array(alphabet, { maxLength: 40 }).map((a) => a.join('')));
    fc.assert(
      fc.property(text, (src) => {
        try {
          const e = parseExpr(src);
          // What parses also prints to something that parses to the same tree.
          expect(shape(parseExpr(printExpr(e)))).toEqual(shape(e));
        } catch (err) {
          expect(err).toBeInstanceOf(ParseError);
          const pe = err as ParseError;
          const lines = src.split('\n');
          expect(pe.line).toBeGreaterThanOrEqual(1);
          expect(pe.line).toBeLessThanOrEqual(lines.length);
          expect(pe.col).toBeGreaterThanOrEqual(1);
          expect(pe.col).toBeLessThanOrEqual(lines[pe.line - 1]!.length + 1);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
