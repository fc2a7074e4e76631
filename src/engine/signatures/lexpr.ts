/**
 * Logical-signature expressions (LogicalSignatures.md): indexes, `&`, `|`, parentheses and the
 * modifiers `=X`, `>X`, `<X`, `=X,Y`, `>X,Y`, `<X,Y`. Like ClamAV's cli_ac_chklsig there is no
 * precedence: an expression splits at its first top-level operator (`0&1|2` is `0&(1|2)`).
 *
 * Evaluation follows the same rules: a subexpression that holds contributes the match count of what
 * it holds and the set of subsignatures involved; a modifier on a parenthesised group compares that
 * summed count with X and requires at least Y distinct subsignatures (`,Y`); on a single index the
 * modifier compares that subsignature's count (ClamAV ignores `,Y` there). `A=0` is negation.
 */
import { HexSigError } from './hexsig.js';
import type { LogicalExpr, LogicalMod } from './types.js';

export function parseLogicalExpr(src: string, subsigCount: number): LogicalExpr {
  let i = 0;
  const peek = () => src[i];
  const num = (what: string): number => {
    const m = /^[0-9]{1,9}/.exec(src.slice(i));
    if (!m) throw new HexSigError(`logical expression: expected ${what} at column ${i + 1} in "${src}"`);
    i += m[0].length;
    return Number(m[0]);
  };
  const mod = (): LogicalMod | undefined => {
    const c = peek();
    if (c !== '=' && c !== '>' && c !== '<') return undefined;
    i++;
    const x = num('a count');
    let y = 0;
    if (peek() === ',') {
      i++;
      y = num('a distinct count');
    }
    return { op: c, x, y };
  };
  const atom = (depth: number): LogicalExpr => {
    if (depth > 64) throw new HexSigError('logical expression nested too deeply');
    let e: LogicalExpr;
    if (peek() === '(') {
      i++;
      e = expr(depth + 1);
      if (peek() !== ')') throw new HexSigError(`logical expression: missing ")" in "${src}"`);
      i++;
    } else {
      const index = num('a subsignature index');
      if (index >= subsigCount)
        throw new HexSigError(`logical expression names subsignature ${index}, only ${subsigCount} given`);
      e = { t: 'sub', index };
    }
    const m = mod();
    if (m) {
      if (e.mod) throw new HexSigError('logical expression: two modifiers on one operand');
      e = { ...e, mod: m };
    }
    return e;
  };
  const expr = (depth: number): LogicalExpr => {
    const left = atom(depth);
    const c = peek();
    if (c === '&' || c === '|') {
      i++;
      return { t: 'op', op: c, left, right: expr(depth + 1) };
    }
    return left;
  };
  if (src.length === 0) throw new HexSigError('empty logical expression');
  const e = expr(0);
  if (i !== src.length)
    throw new HexSigError(`logical expression: unexpected "${src[i]}" at column ${i + 1}`);
  // cli_loadldb refuses a line whose subsignature count differs from the highest index used + 1.
  const highest = maxIndex(e);
  if (highest + 1 !== subsigCount) {
    throw new HexSigError(`${subsigCount} subsignatures but the expression uses indexes up to ${highest}`);
  }
  return e;
}

function maxIndex(e: LogicalExpr): number {
  return e.t === 'sub' ? e.index : Math.max(maxIndex(e.left), maxIndex(e.right));
}

interface Acc {
  cnt: number;
  ids: Set<number>;
}

function holds(m: LogicalMod, v: number): boolean {
  return m.op === '=' ? v === m.x : m.op === '>' ? v > m.x : v < m.x;
}

function evalInto(e: LogicalExpr, counts: ArrayLike<number>, acc: Acc): boolean {
  if (e.t === 'sub') {
    const v = counts[e.index] ?? 0;
    if (e.mod ? !holds(e.mod, v) : v === 0) return false;
    acc.cnt += v;
    acc.ids.add(e.index);
    return true;
  }
  const inner: Acc = { cnt: 0, ids: new Set() };
  const l = evalInto(e.left, counts, inner);
  const r = evalInto(e.right, counts, inner);
  const ok = e.op === '&' ? l && r : l || r;
  if (!e.mod) {
    if (ok) {
      acc.cnt += inner.cnt;
      for (const id of inner.ids) acc.ids.add(id);
    }
    return ok;
  }
  const tcnt = ok ? inner.cnt : 0;
  const tids = ok ? inner.ids.size : 0;
  if (!holds(e.mod, tcnt)) return false;
  if (e.mod.y && tids < e.mod.y) return false;
  acc.cnt += tcnt;
  return true;
}

/** True if the expression holds for these per-subsignature match counts. */
export function evalLogicalExpr(e: LogicalExpr, counts: ArrayLike<number>): boolean {
  return evalInto(e, counts, { cnt: 0, ids: new Set() });
}
