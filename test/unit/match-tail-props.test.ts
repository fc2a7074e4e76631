/**
 * Property tests for sessions started without the object's size on a database that places some
 * signatures relative to the end (EOF-n): every other signature is matched as the bytes arrive
 * and the EOF-n ones in a second pass over the last bytes once the size is known (tailFrom /
 * writeTail). Over generated databases mixing EOF-n (with and without a shift), absolute, floating,
 * fullword and logical signatures (some with EOF-n subsignatures), hashes and allow-list entries:
 *  - every match is the same as with the size given up front, and as one whole-object scan
 *    (the engine's spool-then-match), however the stream and the tail are cut;
 *  - one match wanted: the same verdict (clean or not, and the name is one of those matches), and
 *    an early decision only ever names a signature that matches.
 * (Which of several matching names comes first depends on the order they are found, which chunk
 * cuts already change with the size known, so the one-match name is checked for membership.)
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { compileMatcher, type Matcher } from '../../src/engine/match/index.js';
import { SignatureDbBuilder } from '../../src/engine/signatures/index.js';
import { genPattern, instantiate, type Rng, rng } from '../helpers/sigdb.js';

/** Cut points of `len` bytes into chunks: sorted, distinct, inside. */
function cutsOf(cuts: number[], len: number): number[] {
  return [...new Set(cuts.map((c) => c % (len + 1)))].sort((a, b) => a - b);
}

function feed(write: (b: Buffer) => void, data: Buffer, cuts: number[]): void {
  let prev = 0;
  for (const c of cutsOf(cuts, data.length)) {
    write(data.subarray(prev, c));
    prev = c;
  }
  write(data.subarray(prev));
}

interface Run {
  names: string[];
  decided: string | null;
}

/** With the size up front (`sized`), or without it and then the tail pass. */
function session(m: Matcher, data: Buffer, cuts: number[], sized: boolean, all: boolean): Run {
  const s = m.session(sized ? { size: data.length, allMatches: all } : { allMatches: all });
  feed((b) => s.write(b), data, cuts);
  const decided = s.decided;
  const from = s.tailFrom();
  if (sized) assert.equal(from, null, 'no tail pass with the size given');
  if (from !== null) {
    assert.ok(from >= 0 && from <= data.length);
    // The tail in other cuts than the stream's.
    feed(
      (b) => s.writeTail(b),
      data.subarray(from),
      cuts.map((c) => c * 7 + 3),
    );
  }
  return { names: s.end(), decided };
}

/**
 * A database over `data` whose signatures are planted at known places and placed there (or one
 * byte off, so they just miss) by every offset form; plus random filler around them.
 */
function generate(r: Rng): { m: Matcher; data: Buffer; eofNames: Set<string> } {
  const pats = Array.from({ length: r.int(3, 8) }, () => genPattern(r, { lead: [4, 8] }));
  const pieces: Buffer[] = [r.bytes(r.int(0, 600))];
  const starts: number[] = [];
  let at = pieces[0]!.length;
  for (const p of pats) {
    const inst = r.next() < 0.4 ? instantiate(r, p, { maxStar: 80 }) : Buffer.alloc(0);
    starts.push(inst.length ? at : -1);
    const gap = r.bytes(r.int(0, 400));
    pieces.push(inst, gap);
    at += inst.length + gap.length;
  }
  // Words for the fullword logical subsignatures, at the end sometimes (a ::f match on the last byte).
  const words = ['xevil', ' evil ', 'evilx', ' evil'];
  const word = r.pick(words);
  pieces.push(Buffer.from(word));
  const data = Buffer.concat(pieces);
  const size = data.length;
  const ndb: string[] = [];
  const eofNames = new Set(['T.Logical.Mixed', 'T.Logical.Full']);
  pats.forEach((p, i) => {
    const s = starts[i]! < 0 ? r.int(0, size) : starts[i]!;
    const miss = r.next() < 0.25 ? 1 : 0;
    const form = r.pick(['*', 'abs', 'abs,s', 'eof', 'eof,s', 'eof', 'eof,s'] as const);
    const k = r.int(0, 5);
    const offset =
      form === '*'
        ? '*'
        : form === 'abs'
          ? `${s + miss}`
          : form === 'abs,s'
            ? `${Math.max(0, s - k + miss)},${k}`
            : form === 'eof'
              ? `EOF-${Math.max(0, size - s + miss)}`
              : `EOF-${Math.max(0, size - s + k + miss)},${k}`;
    ndb.push(`T.Body.${i}:0:${offset}:${p.hex}`);
    if (form.startsWith('eof')) eofNames.add(`T.Body.${i}`);
  });
  const hex = (t: string) => Buffer.from(t, 'latin1').toString('hex');
  const p0 = pats[0]!;
  const ldb = [
    // EOF-n and floating subsignatures together; and a fullword one placed at the very end.
    `T.Logical.Mixed;Engine:81-255,Target:0;0&1;${p0.hex};EOF-${r.int(1, size + 2)}:${hex('evil')}`,
    `T.Logical.Full;Engine:81-255,Target:0;0;EOF-${r.int(3, 6)}:${hex('evil')}::f`,
    `T.Logical.Any;Engine:81-255,Target:0;0|1;${pats[1]!.hex};${hex('evil')}::w`,
  ];
  const md5 = createHash('md5').update(data).digest('hex');
  const b = new SignatureDbBuilder();
  b.addFile('t.ndb', Buffer.from(ndb.join('\n')));
  b.addFile('t.ldb', Buffer.from(ldb.join('\n')));
  const hashed = r.next() < 0.2;
  if (hashed) b.addFile('t.hdb', Buffer.from(`${md5}:${size}:T.Hash\n`));
  // Allow-listed now and then: the whole object is clean whatever matched, and nothing decides early.
  if (!hashed && r.next() < 0.1) b.addFile('t.fp', Buffer.from(`${md5}:${size}:T.Allowed\n`));
  return { m: compileMatcher(b.build()), data, eofNames };
}

test('without the size: the same matches as with it, and as one whole scan, however cut', () => {
  let tailPasses = 0;
  let infected = 0;
  let eofFound = 0;
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      fc.array(fc.nat(), { maxLength: 30 }),
      (seed, cuts) => {
        const { m, data, eofNames } = generate(rng(seed));
        const whole = session(m, data, [], true, true).names.sort();
        assert.deepEqual(session(m, data, cuts, true, true).names.sort(), whole, 'size given');
        assert.deepEqual(session(m, data, cuts, false, true).names.sort(), whole, 'size not given');
        const everyByte = Array.from({ length: data.length }, (_, i) => i);
        assert.deepEqual(session(m, data, everyByte, false, true).names.sort(), whole, '1-byte chunks');
        if (!m.sizeFree) tailPasses++;
        if (whole.length) infected++;
        if (whole.some((n) => eofNames.has(n))) eofFound++;
        // One match wanted: the same verdict; an early decision is a signature that matches.
        for (const sized of [true, false]) {
          const one = session(m, data, cuts, sized, false);
          assert.equal(one.names.length, whole.length ? 1 : 0, `one match, sized=${sized}`);
          if (one.names.length) assert.ok(whole.includes(one.names[0]!), one.names[0]);
          if (one.decided) assert.ok(whole.includes(one.decided), one.decided);
        }
      },
    ),
    { numRuns: 300 },
  );
  // The generator really exercises the tail pass and finds things (not all clean, not all EOF-free).
  assert.ok(tailPasses > 250, `${tailPasses} databases with EOF-n signatures`);
  assert.ok(infected > 150 && infected < 290, `${infected} objects with matches`);
  assert.ok(eofFound > 50, `${eofFound} objects matched by an EOF-n signature`);
});

test('the tail pass reads only the last bytes: from the furthest EOF-n distance on', () => {
  const b = new SignatureDbBuilder();
  b.addFile('t.ndb', Buffer.from('Near:0:EOF-10:41424344\nFar:0:EOF-5000,20:45464748\nAny:0:*:494a4b4c\n'));
  const m = compileMatcher(b.build());
  const data = Buffer.alloc(1_000_000, 0x20);
  data.write('EFGH', data.length - 5000 + 7);
  const s = m.session({});
  s.write(data);
  // 5000 back, and one byte before for a fullword check.
  assert.equal(s.tailFrom(), data.length - 5001);
  assert.throws(() => s.write(Buffer.from('x')), /after the end of the stream/);
  assert.throws(() => s.end(), /EOF-n pass/);
  s.writeTail(data.subarray(data.length - 5001));
  assert.deepEqual(s.end(), ['Far']);
  // A signature that is not EOF-n decides while the bytes stream in, and no tail pass follows.
  const early = m.session({});
  early.write(Buffer.from('....IJKL....'));
  assert.equal(early.decided, 'Any');
  assert.equal(early.tailFrom(), null);
  assert.deepEqual(early.end(), ['Any']);
});
