/** Signature database readers: every format, malformed lines, unsupported lines, CVD/CLD, the loader. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import {
  buildCvd,
  buildTar,
  EICAR_NAME,
  loadSignatures,
  parseCvdHeader,
  parseHashLine,
  parseHexSig,
  parseLdbLine,
  parseLogicalExpr,
  parseNdbLine,
  parseOffset,
  SignatureDbBuilder,
  unpackCvd,
} from '../../src/engine/signatures/index.js';
import { SignatureError } from '../../src/errors.js';

function build(files: Record<string, string | Buffer>) {
  const b = new SignatureDbBuilder();
  for (const [n, d] of Object.entries(files)) b.addFile(n, Buffer.isBuffer(d) ? d : Buffer.from(d));
  return b.build();
}

function throwsAt(fn: () => unknown, file: string, line: number, re?: RegExp) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SignatureError, `not a SignatureError: ${e}`);
    assert.equal(e.file, file);
    assert.equal(e.line, line);
    const where = line > 0 ? `${file}:${line}: ` : `${file}: `;
    assert.ok(e.message.startsWith(where), `${e.message} should start with ${where}`);
    if (re) assert.match(e.message, re);
    return true;
  });
}

test('.hdb / .hsb lines: MD5, SHA1, SHA256 by length, * size, flevels', () => {
  assert.deepEqual(parseHashLine('44D88612FEA8A8F36DE82E1278ABB02F:68:Eicar', true), {
    name: 'Eicar',
    algo: 'md5',
    hash: '44d88612fea8a8f36de82e1278abb02f',
    size: 68,
  });
  assert.equal(parseHashLine(`${'a'.repeat(40)}:1:S1`, false).algo, 'sha1');
  assert.equal(parseHashLine(`${'b'.repeat(64)}:*:S2:73`, false).size, null);
  assert.equal(parseHashLine(`${'b'.repeat(64)}:5:S3:51:255`, false).algo, 'sha256');
  const db = build({
    'a.hdb': `${'c'.repeat(32)}:10:M\n\n# comment\n`,
    'b.hsb': `${'d'.repeat(40)}:3:S\r\n`,
  });
  assert.equal(db.counts.hdb, 1);
  assert.equal(db.counts.hsb, 1);
  assert.equal(db.total, 2);
  throwsAt(
    () => build({ 'x.hdb': `${'c'.repeat(32)}:10:M\n${'c'.repeat(40)}:10:M\n` }),
    'x.hdb',
    2,
    /sha1 hash in an MD5/,
  );
  throwsAt(() => build({ 'x.hdb': 'nothex:1:N' }), 'x.hdb', 1);
  throwsAt(() => build({ 'x.hsb': `${'e'.repeat(64)}:big:N` }), 'x.hsb', 1, /size/);
  throwsAt(() => build({ 'x.hsb': `${'e'.repeat(64)}:1` }), 'x.hsb', 1);
});

test('flevel out of range is counted as unsupported, not dropped silently', () => {
  const db = build({ 'f.hdb': `${'c'.repeat(32)}:10:Future:999\n${'c'.repeat(32)}:10:Old:1:20\n` });
  assert.equal(db.total, 0);
  assert.deepEqual(
    db.unsupported.map((u) => [u.file, u.line]),
    [
      ['f.hdb', 1],
      ['f.hdb', 2],
    ],
  );
});

test('hex body forms parse into parts and gaps', () => {
  const p = parseHexSig(
    '4142??a??b(61|62)!(63|64)(6566|6768)!(6969|6a6a)*4344{3}4546{-5}4748{7-}494a{2-9}4b4c',
  );
  assert.equal(p.parts.length, 5);
  assert.deepEqual(
    p.gaps.map((g) => [g.min, g.max]),
    [
      [0, Number.POSITIVE_INFINITY],
      [0, 5],
      [7, Number.POSITIVE_INFINITY],
      [2, 9],
    ],
  );
  assert.equal(p.parts[0]!.len, 2 + 1 + 1 + 1 + 1 + 1 + 2 + 2);
  assert.equal(p.parts[1]!.len, 2 + 3 + 2, '{3} is inlined as ??');
  for (const bad of [
    '',
    '41',
    '414',
    '41zz',
    '*4142',
    '4142*',
    '4142**4344',
    '41{',
    '41{5-2}42',
    '41(42',
    '41(4243|44)45',
    '41!(4243|44)',
  ]) {
    assert.throws(
      () => parseHexSig(bad.length === 2 ? `${bad}4` : bad),
      (e: Error) => e.name === 'HexSigError' || e.name === 'Error',
      bad,
    );
  }
});

test('.ndb lines: every offset form; EP/section offsets and normalized targets are unsupported', () => {
  assert.deepEqual(parseOffset('*'), { kind: 'any' });
  assert.deepEqual(parseOffset('12'), { kind: 'abs', n: 12, shift: 0 });
  assert.deepEqual(parseOffset('12,5'), { kind: 'abs', n: 12, shift: 5 });
  assert.deepEqual(parseOffset('EOF-7'), { kind: 'eof', n: 7, shift: 0 });
  assert.deepEqual(parseOffset('EOF-7,3'), { kind: 'eof', n: 7, shift: 3 });
  assert.equal(parseNdbLine('N:0:*:414243').name, 'N');
  assert.equal(parseNdbLine('N:1:*:414243:51:255').target, 1);
  const db = build({
    'u.ndb': [
      'A:0:EP+10:41424344',
      'B:1:S2+4:41424344',
      'C:3:*:41424344',
      'D:7:*:41424344',
      'E:0:*:4142(B)4344',
      'F:0:*:41[1-2]4243',
      'G:0:*:41424344',
    ].join('\n'),
  });
  assert.equal(db.counts.ndb, 1);
  assert.deepEqual(
    db.unsupported.map((u) => u.line),
    [1, 2, 3, 4, 5, 6],
  );
  for (const u of db.unsupported) assert.ok(u.reason.length > 5);
  throwsAt(() => build({ 'm.ndb': 'Good:0:*:41424344\nBad:0:*:4142zz\n' }), 'm.ndb', 2);
  throwsAt(() => build({ 'm.ndb': 'Bad:0:X:41424344' }), 'm.ndb', 1, /offset/);
  throwsAt(() => build({ 'm.ndb': 'Bad:0:*' }), 'm.ndb', 1);
  throwsAt(() => build({ 'm.ndb': 'Bad:99:*:41424344' }), 'm.ndb', 1, /target/);
  throwsAt(() => build({ 'm.ndb': 'Short:0:*:4142' }), 'm.ndb', 1, /3 bytes/);
  throwsAt(() => build({ 'm.ndb': 'NoAnchor:0:*:41??42??43' }), 'm.ndb', 1, /static/);
});

test('.ldb lines: TDB keys, expression operators and counts, subsig offsets and modifiers', () => {
  const l = parseLdbLine(
    'Sig;Engine:81-255,Target:0,FileSize:10-2000;((0|1)>2,2&2=0)|3<4;41424344;10:45464748::i;EOF-20:494a4b4c::wa;4d4e4f50::f',
  );
  assert.equal(l.subsigs.length, 4);
  assert.equal(l.subsigs[2]!.length, 2, '::wa gives an ascii and a wide pattern');
  assert.deepEqual(l.fileSize, [10, 2000]);
  assert.deepEqual(l.subsigs[1]![0]!.offset, { kind: 'abs', n: 10, shift: 0 });
  assert.equal(l.subsigs[3]![0]!.fullword, true);
  assert.deepEqual(parseLogicalExpr('0&1|2', 3), {
    t: 'op',
    op: '&',
    left: { t: 'sub', index: 0 },
    right: { t: 'op', op: '|', left: { t: 'sub', index: 1 }, right: { t: 'sub', index: 2 } },
  });
  const db = build({
    'u.ldb': [
      'P;Engine:81-255,Target:0;0&1;41424344;0/abc/i',
      'B;Engine:81-255,Target:0;0&1;41424344;0(>>5#hb2#=1)',
      'E;Engine:51-255,Target:1,EntryPoint:10-20;0;41424344',
      'F;Engine:255-255,Target:0;0;41424344',
      'N;Engine:51-255,Target:3;0;41424344',
      'OK;Engine:51-255,Target:0;0;41424344',
    ].join('\n'),
  });
  assert.equal(db.counts.ldb, 1);
  assert.deepEqual(
    db.unsupported.map((u) => u.line),
    [1, 2, 3, 4, 5],
  );
  throwsAt(() => build({ 'b.ldb': 'X;Engine:51-255,Target:0;0&1;41424344' }), 'b.ldb', 1);
  throwsAt(
    () => build({ 'b.ldb': 'X;Engine:51-255,Target:0;0;41424344;45464748' }),
    'b.ldb',
    1,
    /indexes up to 0/,
  );
  throwsAt(() => build({ 'b.ldb': 'X;Engine:51-255,Target:0;(0&1;41424344;45464748' }), 'b.ldb', 1);
  throwsAt(() => build({ 'b.ldb': 'X;Engine:51-255,Target:0;0;41424344::q' }), 'b.ldb', 1, /modifier/);
  throwsAt(() => build({ 'b.ldb': 'X;Bogus:1;0;41424344' }), 'b.ldb', 1, /Bogus/);
  throwsAt(() => build({ 'b.ldb': 'X;Engine:51-255;0' }), 'b.ldb', 1);
});

test('.ign2 drops names at load; .fp/.sfp are counted as allow entries, not detections', () => {
  const db = build({
    'a.ndb': 'Keep:0:*:41424344\nDrop:0:*:45464748\n',
    'b.ign2': 'Drop\nOther:0123456789abcdef0123456789abcdef\n',
    'c.fp': `${'a'.repeat(32)}:5:Clean\n`,
    'd.sfp': `${'b'.repeat(64)}:5:Clean2\n`,
  });
  assert.deepEqual(
    db.bodies.map((b) => b.name),
    ['Keep'],
  );
  assert.equal(db.counts.fp, 2);
  assert.equal(db.counts.ign, 2);
  assert.equal(db.total, 1);
});

test('unsupported database files (.cbc, .mdb, .imp, unknown) are reported, not fatal', () => {
  const db = build({
    'a.cbc': 'x',
    'b.mdb': '1:2:3',
    'c.imp': 'x',
    'd.weird': 'x',
    'e.ndb': 'Ok:0:*:41424344',
  });
  assert.equal(db.total, 1);
  assert.deepEqual(
    db.unsupported.map((u) => u.file),
    ['a.cbc', 'b.mdb', 'c.imp', 'd.weird'],
  );
});

test('CVD: real header, gzip tar body, MD5 verified; CLD plain tar; version and build time', () => {
  const files = [
    { name: 'COPYING', data: Buffer.from('license text') },
    { name: 'test.ndb', data: Buffer.from('Cvd.Body:0:*:6d616c77617265\n') },
    { name: 'test.hdb', data: Buffer.from(`${'a'.repeat(32)}:12:Cvd.Hash\n`) },
    { name: 'test.info', data: Buffer.from('ClamAV-VDB:whatever\n') },
  ];
  const cvd = buildCvd(files, 4242, { buildTime: new Date(Date.UTC(2026, 10, 23, 6, 4)) });
  const h = parseCvdHeader('t.cvd', cvd);
  assert.equal(h.version, 4242);
  assert.equal(h.buildTime, '23 Nov 2026 06-04 +0000');
  assert.match(
    cvd.subarray(0, 512).toString('latin1'),
    /^ClamAV-VDB:23 Nov 2026 06-04 \+0000:4242:2:90:[0-9a-f]{32}:X{64}:scangate:\d+ +$/,
  );
  const db = build({ 'daily.cvd': cvd });
  assert.equal(db.version, '4242');
  assert.equal(db.versionNumber, 4242);
  assert.equal(db.buildTime, '23 Nov 2026 06-04 +0000');
  assert.equal(db.counts.ndb, 1);
  assert.equal(db.counts.hdb, 1);
  assert.equal(unpackCvd('t.cvd', cvd, 'cvd').files.length, 4);
  // Corrupt one body byte: MD5 mismatch.
  const bad = Buffer.from(cvd);
  bad[bad.length - 5]! ^= 1;
  throwsAt(() => build({ 'bad.cvd': bad }), 'bad.cvd', 0, /MD5/);
  throwsAt(() => build({ 'hdr.cvd': Buffer.alloc(600) }), 'hdr.cvd', 0, /header/);
  const cld = buildCvd(files, 4300, { kind: 'cld' });
  assert.equal(cld.subarray(512, 519).toString(), 'COPYING');
  const both = build({ 'daily.cvd': cvd, 'main.cld': cld });
  assert.equal(both.version, '4300', 'highest version wins');
  assert.equal(both.counts.ndb, 2);
  // A tar entry with a directory part is refused (cvd.c rules).
  const dir = buildCvd([{ name: 'x/y.ndb', data: Buffer.from('') }], 1);
  throwsAt(() => build({ 'd.cvd': dir }), 'd.cvd', 0, /directory/);
  // A member line error names the member.
  const badMember = buildCvd([{ name: 'm.ndb', data: Buffer.from('ok:0:*:41424344\nbad') }], 2);
  throwsAt(() => build({ 'e.cvd': badMember }), 'e.cvd/m.ndb', 2);
  assert.ok(gzipSync(buildTar(files)).length > 0);
  // A .info member's name:size:sha256 lines are checked like cli_tgzload does.
  const ndb = Buffer.from('I:0:*:41424344\n');
  const sha = createHash('sha256').update(ndb).digest('hex');
  const info = (h: string) => ({
    name: 'x.info',
    data: Buffer.from(`ClamAV-VDB:hdr\nx.ndb:${ndb.length}:${h}\nDSIG:abc\n`),
  });
  assert.equal(build({ 'i.cvd': buildCvd([info(sha), { name: 'x.ndb', data: ndb }], 3) }).counts.ndb, 1);
  throwsAt(
    () => build({ 'j.cvd': buildCvd([info('0'.repeat(64)), { name: 'x.ndb', data: ndb }], 3) }),
    'j.cvd/x.ndb',
    0,
    /SHA-256/,
  );
  throwsAt(() => build({ 'k.cvd': buildCvd([info(sha)], 3) }), 'k.cvd/x.info', 0, /lacks/);
});

test('loader: files and folders (sorted, known extensions), builtin EICAR, local- version', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sigs-'));
  try {
    writeFileSync(join(dir, 'b.ndb'), 'B:0:*:41424344\n');
    writeFileSync(join(dir, 'a.hdb'), `${'a'.repeat(32)}:1:A\n`);
    writeFileSync(join(dir, 'notes.txt'), 'not a database');
    writeFileSync(join(dir, 'x.cbc'), 'bytecode');
    const db = await loadSignatures([dir]);
    assert.equal(db.counts.ndb, 2, 'B + builtin EICAR body');
    assert.equal(db.counts.hdb, 2);
    assert.ok(db.bodies.some((b) => b.name === EICAR_NAME));
    assert.match(db.version, /^local-[0-9a-f]{12}$/);
    assert.equal(db.versionNumber, undefined);
    assert.deepEqual(
      db.unsupported.map((u) => u.file),
      [join(dir, 'x.cbc')],
    );
    const noBuiltin = await loadSignatures([join(dir, 'b.ndb')], { builtin: false });
    assert.equal(noBuiltin.total, 1);
    const again = await loadSignatures([dir]);
    assert.equal(again.version, db.version, 'same content, same version');
    writeFileSync(join(dir, 'b.ndb'), 'B:0:*:41424345\n');
    assert.notEqual((await loadSignatures([dir])).version, db.version);
    writeFileSync(join(dir, 'corrupt.ndb'), 'Good.Sig:0:*:41424344454647\nBroken.Sig:0:*:4142zz\n');
    await assert.rejects(loadSignatures([dir]), /corrupt\.ndb:2/);
    await assert.rejects(loadSignatures([join(dir, 'missing.ndb')]), SignatureError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
