/** Hand-written matcher cases: every body form and offset, logical operators, hashes, allow lists. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { compileMatcher } from '../../src/engine/match/index.js';
import { builtinSignatures, SignatureDbBuilder } from '../../src/engine/signatures/index.js';
import { EICAR, EICAR_NAME } from '../helpers/eicar.js';

function matcher(files: Record<string, string>, builtin = false) {
  const b = new SignatureDbBuilder();
  if (builtin) b.addParsed(builtinSignatures());
  for (const [name, text] of Object.entries(files)) b.addFile(name, Buffer.from(text, 'latin1'));
  return compileMatcher(b.build());
}

/** All names, feeding `data` in pieces of `step` bytes (default: one chunk). */
function scan(m: ReturnType<typeof matcher>, data: Buffer | string, step = 0): string[] {
  const buf = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  const s = m.session({ size: buf.length, allMatches: true });
  const n = step || buf.length || 1;
  for (let i = 0; i < buf.length; i += n) s.write(buf.subarray(i, i + n));
  return s.end();
}

const hex = (s: string) => Buffer.from(s, 'latin1').toString('hex');

test('EICAR: exact file by hash and body, with trailing newline by body, in 1-byte chunks too', () => {
  const m = matcher({}, true);
  assert.deepEqual(scan(m, EICAR), [EICAR_NAME]);
  assert.deepEqual(scan(m, Buffer.concat([EICAR, Buffer.from('\r\n')]), 1), [EICAR_NAME]);
  assert.deepEqual(scan(m, Buffer.concat([Buffer.from('  '), EICAR.subarray(0, 67)])), []);
  assert.ok(m.signatureCount >= 2);
});

test('.ndb plain hex, ??, nibbles', () => {
  const m = matcher({
    'a.ndb': ['Plain:0:*:414243', 'Any:0:*:6162??6465', 'Hi:0:*:7071a?7273', 'Lo:0:*:7879?27a7b'].join('\n'),
  });
  assert.deepEqual(scan(m, 'xxABCxx'), ['Plain']);
  assert.deepEqual(scan(m, 'xxABxCxx'), []);
  assert.deepEqual(scan(m, '..abZde..'), ['Any']);
  assert.deepEqual(scan(m, '..abZd..'), []);
  assert.deepEqual(scan(m, 'pq\xa7rs'), ['Hi']);
  assert.deepEqual(scan(m, 'pq\xb7rs'), []);
  assert.deepEqual(scan(m, 'xy\x32z{'), ['Lo']);
  assert.deepEqual(scan(m, 'xy\x33z{'), []);
});

test('.ndb gaps: *, {n}, {-n}, {n-}, {n-m}, and {0} read as * like ClamAV', () => {
  const m = matcher({
    'g.ndb': [
      'Star:0:*:41414141*42424242',
      'Fixed:0:*:43434343{3}44444444',
      'FixedBig:0:*:43434343{200}45454545',
      'UpTo:0:*:46464646{-2}47474747',
      'AtLeast:0:*:48484848{2-}49494949',
      'Range:0:*:4a4a4a4a{1-2}4b4b4b4b',
      'Zero:0:*:4c4c4c4c{0}4d4d4d4d',
    ].join('\n'),
  });
  assert.deepEqual(scan(m, `AAAA${'x'.repeat(5000)}BBBB`), ['Star']);
  assert.deepEqual(scan(m, 'BBBBAAAA'), []);
  assert.deepEqual(scan(m, 'CCCCxxxDDDD'), ['Fixed']);
  assert.deepEqual(scan(m, 'CCCCxxDDDD'), []);
  assert.deepEqual(scan(m, `CCCC${'y'.repeat(200)}EEEE`, 7), ['FixedBig']);
  assert.deepEqual(scan(m, `CCCC${'y'.repeat(201)}EEEE`), []);
  assert.deepEqual(scan(m, 'FFFFGGGG'), ['UpTo']);
  assert.deepEqual(scan(m, 'FFFFxxGGGG'), ['UpTo']);
  assert.deepEqual(scan(m, 'FFFFxxxGGGG'), []);
  assert.deepEqual(scan(m, 'HHHHxIIII'), []);
  assert.deepEqual(scan(m, `HHHH${'x'.repeat(999)}IIII`), ['AtLeast']);
  assert.deepEqual(scan(m, 'JJJJKKKK'), []);
  assert.deepEqual(scan(m, 'JJJJxKKKK'), ['Range']);
  assert.deepEqual(scan(m, 'JJJJxxKKKK'), ['Range']);
  assert.deepEqual(scan(m, 'JJJJxxxKKKK'), []);
  assert.deepEqual(scan(m, 'LLLLxxxxxMMMM'), ['Zero']);
});

test('.ndb a range gap is satisfied by any earlier part occurrence, not just the last', () => {
  const m = matcher({ 'r.ndb': 'R:0:*:41414141{5-6}42424242' });
  // First AAAA is 6 bytes before BBBB, the second only 1: the first one makes the match.
  assert.deepEqual(scan(m, 'AAAAxAAAAxBBBB', 3), ['R']);
  assert.deepEqual(scan(m, 'AAAAxBBBB'), []);
  assert.deepEqual(scan(m, 'AAAAxxxxxxxBBBB'), []);
});

test('.ndb alternates: single-byte, negated, fixed multi-byte, negated multi-byte', () => {
  const m = matcher({
    'alt.ndb': [
      'One:0:*:6162(63|64)6566',
      'NotOne:0:*:3132!(33|34)3536',
      'Multi:0:*:7071(7273|7475)7677',
      'NotMulti:0:*:5152!(5354|5556)5758',
    ].join('\n'),
  });
  assert.deepEqual(scan(m, 'abcef'), ['One']);
  assert.deepEqual(scan(m, 'abdef'), ['One']);
  assert.deepEqual(scan(m, 'abxef'), []);
  assert.deepEqual(scan(m, '12x56'), ['NotOne']);
  assert.deepEqual(scan(m, '12356'), []);
  assert.deepEqual(scan(m, 'pqrsvw'), ['Multi']);
  assert.deepEqual(scan(m, 'pqtuvw'), ['Multi']);
  assert.deepEqual(scan(m, 'pqrtvw'), []);
  assert.deepEqual(scan(m, 'QRSVWX'), ['NotMulti']);
  assert.deepEqual(scan(m, 'QRSTWX'), []);
});

test('.ndb offsets: n, n,maxshift, EOF-n, EOF-n,maxshift', () => {
  const m = matcher({
    'o.ndb': [
      'At:0:4:41424344',
      'Shift:0:4,2:45464748',
      'Eof:0:EOF-4:494a4b4c',
      'EofShift:0:EOF-6,2:4d4e4f50',
    ].join('\n'),
  });
  assert.deepEqual(scan(m, 'xxxxABCDxx'), ['At']);
  assert.deepEqual(scan(m, 'xxxABCDxxx'), []);
  assert.deepEqual(scan(m, 'xxxxxxEFGHx'), ['Shift']);
  assert.deepEqual(scan(m, 'xxxxxxxEFGH'), []);
  assert.deepEqual(scan(m, 'xxxxxIJKL'), ['Eof']);
  assert.deepEqual(scan(m, 'xxxxxIJKLx'), []);
  assert.deepEqual(scan(m, 'xxxxxxMNOPxx'), ['EofShift']);
  assert.deepEqual(scan(m, 'xxxxxMNOPxxx'), []);
});

test('.ndb target types: 1 (PE, MZ magic as ClamAV), 6 ELF, 10 PDF; 0 matches anything', () => {
  const m = matcher({
    't.ndb': ['Pe:1:*:6d616c77617265', 'Elf:6:*:6d616c77617265', 'Pdf:10:*:6d616c77617265'].join('\n'),
  });
  const pe = Buffer.alloc(200);
  pe.write('MZ', 0);
  pe.writeUInt32LE(0x80, 0x3c);
  pe.write('PE\0\0', 0x80, 'latin1');
  pe.write('malware', 150);
  assert.deepEqual(scan(m, pe), ['Pe']);
  assert.deepEqual(scan(m, Buffer.concat([Buffer.from('\x7fELF', 'latin1'), Buffer.from('..malware')])), [
    'Elf',
  ]);
  assert.deepEqual(scan(m, '%PDF-1.7 malware'), ['Pdf']);
  assert.deepEqual(scan(m, 'plain malware'), []);
});

test('.ldb &, |, counts =n >n <n, group counts with distinct subsigs', () => {
  const m = matcher({
    'l.ldb': [
      'And;Engine:51-255,Target:0;0&1;41414141;42424242',
      'Or;Engine:51-255,Target:0;0|1;43434343;44444444',
      'Eq;Engine:51-255,Target:0;0=2;45454545',
      'Gt;Engine:51-255,Target:0;0>1;46464646',
      'Lt;Engine:51-255,Target:0;0<2&1;47474747;48484848',
      'Grp;Engine:51-255,Target:0;(0|1)>2,2;49494949;4a4a4a4a',
      'Not;Engine:51-255,Target:0;0&1=0;4b4b4b4b;4c4c4c4c',
    ].join('\n'),
  });
  assert.deepEqual(scan(m, 'AAAA..BBBB'), ['And']);
  assert.deepEqual(scan(m, 'AAAA....'), []);
  assert.deepEqual(scan(m, 'DDDD'), ['Or']);
  assert.deepEqual(scan(m, 'EEEE.EEEE'), ['Eq']);
  assert.deepEqual(scan(m, 'EEEE.EEEE.EEEE'), []);
  assert.deepEqual(scan(m, 'FFFF.FFFF'), ['Gt']);
  assert.deepEqual(scan(m, 'FFFF'), []);
  assert.deepEqual(scan(m, 'GGGG.HHHH'), ['Lt']);
  assert.deepEqual(scan(m, 'GGGG.GGGG.HHHH'), []);
  assert.deepEqual(scan(m, 'IIII.IIII.JJJJ'), ['Grp']);
  assert.deepEqual(scan(m, 'IIII.IIII.IIII'), [], 'count 3 but only one distinct subsig');
  assert.deepEqual(scan(m, 'KKKK'), ['Not']);
  assert.deepEqual(scan(m, 'KKKK.LLLL'), []);
});

test('.ldb modifiers ::i ::w ::wa ::f, subsig offsets, FileSize', () => {
  const m = matcher({
    'm.ldb': [
      `Nocase;Engine:81-255,Target:0;0;${hex('virus')}::i`,
      `Wide;Engine:81-255,Target:0;0;${hex('trojan')}::w`,
      `WideAscii;Engine:81-255,Target:0;0;${hex('worm')}::wa`,
      `Full;Engine:81-255,Target:0;0;${hex('evil')}::f`,
      `Off;Engine:51-255,Target:0;0;2:${hex('QQQQ')}`,
      `Size;Engine:51-255,Target:0,FileSize:5-10;0;${hex('ZZZZ')}`,
    ].join('\n'),
  });
  assert.deepEqual(scan(m, 'a ViRuS b'), ['Nocase']);
  assert.deepEqual(scan(m, Buffer.from('..trojan..', 'utf16le')), ['Wide']);
  assert.deepEqual(scan(m, '..trojan..'), []);
  assert.deepEqual(scan(m, Buffer.from('worm', 'utf16le')), ['WideAscii']);
  assert.deepEqual(scan(m, 'a worm'), ['WideAscii']);
  assert.deepEqual(scan(m, 'an evil plan'), ['Full']);
  assert.deepEqual(scan(m, 'evil'), ['Full']);
  assert.deepEqual(scan(m, 'devilish'), []);
  assert.deepEqual(scan(m, 'xxQQQQ'), ['Off']);
  assert.deepEqual(scan(m, 'xxxQQQQ'), []);
  assert.deepEqual(scan(m, 'xZZZZx'), ['Size']);
  assert.deepEqual(scan(m, 'xZZZZxxxxxxxx'), []);
});

test('hash signatures: MD5 / SHA1 / SHA256 with size, * size; wrong size does not match', () => {
  const data = Buffer.from('some sample payload');
  const h = (a: string) => createHash(a).update(data).digest('hex');
  const m = matcher({
    'x.hdb': `${h('md5')}:${data.length}:Md5\n`,
    'x.hsb': `${h('sha1')}:${data.length}:Sha1\n${h('sha256')}:*:Sha256Any:73\n${h('sha256')}:${data.length + 1}:WrongSize\n`,
  });
  assert.deepEqual(scan(m, data, 5).sort(), ['Md5', 'Sha1', 'Sha256Any']);
  assert.deepEqual(scan(m, Buffer.concat([data, Buffer.from('x')])), []);
});

test('.fp / .sfp allow lists make a matching file clean; .ign2 drops names at load', () => {
  const bad = Buffer.from('..ABCDEF..');
  const m = matcher({
    'b.ndb': 'Bad:0:*:414243444546\nOther:0:*:515253545556\nIgnored:0:*:616263646566\n',
    'a.fp': `${createHash('md5').update(bad).digest('hex')}:${bad.length}:Known.Clean\n`,
    'a.ign2': 'Ignored\n',
  });
  assert.deepEqual(scan(m, bad), []);
  assert.deepEqual(scan(m, '..ABCDEF...'), ['Bad']);
  assert.deepEqual(scan(m, '..abcdef..'), []);
  const other = Buffer.from('QRSTUV');
  const m2 = matcher({
    'b.ndb': 'Other:0:*:515253545556\n',
    'a.sfp': `${createHash('sha256').update(other).digest('hex')}:6:C\n`,
  });
  assert.deepEqual(scan(m2, other), []);
});

test('first match is primary; without allMatches the session stops early and returns one name', () => {
  const m = matcher({ 'p.ndb': 'First:0:*:41414141\nSecond:0:*:42424242\n' });
  const s = m.session({ size: 12 });
  s.write(Buffer.from('xAAAAx'));
  s.write(Buffer.from('BBBBxx'));
  assert.deepEqual(s.end(), ['First']);
  assert.deepEqual(scan(m, 'xAAAAxBBBBxx'), ['First', 'Second']);
});

test('matches straddling chunk boundaries of every size are found', () => {
  const m = matcher({ 's.ndb': 'S:0:*:41424344{2-4}45464748*494a4b4c\n' });
  const data = Buffer.from(`${'z'.repeat(100)}ABCDxyzEFGH${'q'.repeat(50)}IJKL${'z'.repeat(10)}`);
  for (let step = 1; step <= 40; step++) assert.deepEqual(scan(m, data, step), ['S'], `step ${step}`);
});

test('bounded state: a repeating part and a long object keep only a small tail and one chain window', () => {
  const m = matcher({ 'b.ndb': 'B:0:*:41414141{1-100}42424242\n' });
  const chunk = Buffer.alloc(65536, 0x41);
  const s = m.session({ size: chunk.length * 64 + 4, allMatches: true });
  const t0 = performance.now();
  for (let i = 0; i < 64; i++) s.write(chunk);
  // An anchor at every byte is the worst case; it must stay linear (measured ~14 MB/s here).
  assert.ok(performance.now() - t0 < 5000, 'repeated anchors must not make the scan quadratic');
  const inner = s as unknown as { tail: Buffer; chains: Map<number, number[][]>; pending: unknown[] };
  assert.ok(inner.tail.length < 1024, `tail ${inner.tail.length}`);
  assert.equal(inner.pending.length, 0);
  for (const windows of inner.chains.values())
    for (const w of windows) assert.ok(w.length <= 2, `windows ${w.length}`);
  s.write(Buffer.from('BBBB'));
  assert.deepEqual(s.end(), ['B'], 'the AAAA ending one byte before BBBB satisfies {1-100}');
});
