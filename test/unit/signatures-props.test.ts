/** Hostile input: the database readers throw nothing but SignatureError, whatever the bytes. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { buildCvd, SignatureDbBuilder } from '../../src/engine/signatures/index.js';
import { SignatureError } from '../../src/errors.js';

const EXTS = ['hdb', 'hsb', 'ndb', 'ldb', 'fp', 'sfp', 'ign2', 'cvd', 'cld', 'cud'];

/** Text made of the characters the formats care about, so the parsers get deep, not just rejected. */
const sigChars = fc
  .array(fc.constantFrom(...'0123456789abcdefABCDEF?*{}-(|)!:;,=<>&/#[]EOFPSxiwaf \n\r\t\0'.split('')), {
    maxLength: 200,
  })
  .map((a) => a.join(''));

function onlySignatureErrors(name: string, data: Buffer) {
  const b = new SignatureDbBuilder();
  try {
    b.addFile(name, data);
    const db = b.build();
    assert.ok(db.total >= 0);
  } catch (e) {
    if (!(e instanceof SignatureError))
      throw new Error(`${name}: ${String(e)} (${(e as Error)?.constructor?.name})`);
    assert.ok(e.line >= 0);
  }
}

test('line parsers throw only SignatureError on arbitrary text', () => {
  fc.assert(
    fc.property(fc.constantFrom(...EXTS), fc.oneof(sigChars, fc.string({ maxLength: 200 })), (ext, text) => {
      onlySignatureErrors(`x.${ext}`, Buffer.from(text, 'latin1'));
    }),
    { numRuns: 3000 },
  );
});

test('line parsers on mutations of valid lines', () => {
  const valid = [
    ['ndb', 'Name:0:*:4142??43(44|45)!(46|47)a?4b*4c4d{2-5}4e4f{3}5051{-4}5253{6-}5455'],
    ['ndb', 'Name:0:EOF-10,4:41424344:51:255'],
    [
      'ldb',
      'N;Engine:81-255,Target:0,FileSize:1-100;((0|1)>2,2&2=0)|3<4;41424344;10:45464748::i;EOF-20:494a4b4c::wa;4d4e4f50::f',
    ],
    ['hdb', '44d88612fea8a8f36de82e1278abb02f:68:Eicar:51:255'],
    ['hsb', `${'a'.repeat(64)}:*:S:73`],
  ] as const;
  fc.assert(
    fc.property(
      fc.constantFrom(...valid),
      fc.nat(),
      fc.nat(),
      fc.string({ maxLength: 3 }),
      ([ext, line], at, del, ins) => {
        const i = at % (line.length + 1);
        const mutated = line.slice(0, i) + ins + line.slice(i + (del % 4));
        onlySignatureErrors(`m.${ext}`, Buffer.from(mutated, 'latin1'));
      },
    ),
    { numRuns: 3000 },
  );
});

test('CVD container: truncated or bit-flipped files throw only SignatureError', () => {
  const cvd = buildCvd([{ name: 'a.ndb', data: Buffer.from('A:0:*:41424344\n') }], 7);
  const cld = buildCvd([{ name: 'a.ndb', data: Buffer.from('A:0:*:41424344\n') }], 7, { kind: 'cld' });
  fc.assert(
    fc.property(
      fc.constantFrom(['x.cvd', cvd] as const, ['x.cld', cld] as const),
      fc.nat(),
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      ([name, base], cut, at, flip) => {
        const b = Buffer.from(base.subarray(0, cut % (base.length + 1)));
        if (b.length) b[at % b.length]! ^= flip;
        onlySignatureErrors(name, b);
      },
    ),
    { numRuns: 1500 },
  );
});
