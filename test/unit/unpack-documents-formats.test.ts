/**
 * Document unpackers on built inputs: mail variants (QP, nested, RFC 2231/2047 names, mbox,
 * unterminated and 10,000-deep multiparts), standalone uuencode, PDF filters, OLE2 streams with
 * VBA macros and hostile FAT chains, and limits/abort handling.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deflateSync } from 'node:zlib';
import { BufferSource } from '../../src/engine/source.js';
import { binhexUnpacker } from '../../src/engine/unpack/binhex.js';
import { chmUnpacker } from '../../src/engine/unpack/chm.js';
import { mimeUnpacker } from '../../src/engine/unpack/mime.js';
import { ole2Unpacker } from '../../src/engine/unpack/ole2.js';
import { pdfUnpacker } from '../../src/engine/unpack/pdf.js';
import { ole1Unpacker, rtfUnpacker } from '../../src/engine/unpack/rtf.js';
import { tnefUnpacker } from '../../src/engine/unpack/tnef.js';
import { uuencodeUnpacker } from '../../src/engine/unpack/uuencode.js';
import { UnpackLimitError } from '../../src/errors.js';
import { EICAR } from '../helpers/eicar.js';
import { buildChm } from './unpack-documents-chm-helpers.js';
import {
  buildCfb,
  ctx,
  drain,
  lzwEncode,
  ole1Object,
  packageNative,
  uuencodeLines,
  vbaCompress,
  vbaDir,
} from './unpack-documents-helpers.js';

const crlf = (lines: string[]) => Buffer.from(lines.join('\r\n'), 'latin1');
const b64 = (b: Buffer) => b.toString('base64').replace(/.{1,76}/g, '$&\r\n');

test('mail: a base64 EICAR attachment and a quoted-printable EICAR part decode to the exact bytes', async () => {
  const qp = EICAR.toString('latin1').replace(/[=]/g, '=3D').replace('!P%@AP', '=21P=25@AP');
  const mail = crlf([
    'From: a@example.org',
    'To: b@example.org',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b1"',
    '',
    'preamble, not a part',
    '--b1',
    'Content-Type: text/plain',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    `${qp.slice(0, 30)}=`,
    qp.slice(30),
    '--b1  ',
    'Content-Type: application/octet-stream; name="eicar.com"',
    'Content-Transfer-Encoding: base64',
    '',
    b64(EICAR).replace(/=+\r\n$/, '\r\n'), // padding dropped: readers must tolerate it
    '--b1--',
    'epilogue',
  ]);
  const entries = await drain(mimeUnpacker, mail);
  assert.equal(entries.length, 2, JSON.stringify(entries.map((e) => e.name)));
  assert.ok(entries[0]!.data.equals(EICAR), entries[0]!.data.toString('latin1'));
  assert.equal(entries[0]!.name, 'part-1');
  assert.equal(entries[1]!.name, 'eicar.com');
  assert.ok(entries[1]!.data.equals(EICAR));
});

test('mail: RFC 2231 continuations and RFC 2047 encoded words name the attachment', async () => {
  const part = (disposition: string) => [
    '--x',
    disposition,
    'Content-Transfer-Encoding: base64',
    '',
    b64(EICAR),
  ];
  const mail = crlf([
    'From: a@example.org',
    'Subject: names',
    'Content-Type: multipart/mixed; boundary=x',
    '',
    ...part("Content-Disposition: attachment; filename*0*=utf-8''r%C3%A9s; filename*1*=um%C3%A9.exe"),
    ...part('Content-Disposition: attachment; filename="=?utf-8?B?w6l0w6kuc2Ny?="'),
    ...part('Content-Type: application/x-msdownload; name="plain.exe"'),
    '--x--',
    '',
  ]);
  const entries = await drain(mimeUnpacker, mail);
  assert.deepEqual(
    entries.map((e) => e.name),
    ['résumé.exe', 'été.scr', 'plain.exe'],
  );
  for (const e of entries) assert.ok(e.data.equals(EICAR));
});

test('mail: a message/rfc822 part is yielded whole so the scanner recurses into it', async () => {
  const inner = crlf([
    'From: c@example.org',
    'Subject: inner',
    'Content-Type: application/octet-stream; name="inner.bin"',
    'Content-Transfer-Encoding: base64',
    '',
    b64(EICAR),
  ]);
  const mail = crlf([
    'From: a@example.org',
    'Subject: fwd',
    'Content-Type: multipart/mixed; boundary="o"',
    '',
    '--o',
    'Content-Type: message/rfc822',
    '',
    inner.toString('latin1'),
    '--o--',
  ]);
  const [fwd] = await drain(mimeUnpacker, mail);
  assert.ok(fwd!.data.equals(inner));
  assert.ok(mimeUnpacker.detect(fwd!.data, fwd!.data.length));
  const [att] = await drain(mimeUnpacker, fwd!.data);
  assert.equal(att!.name, 'inner.bin');
  assert.ok(att!.data.equals(EICAR));
});

test('mbox: every message is split at its From_ line; uuencoded blocks in text bodies are found', async () => {
  const mbox = Buffer.from(
    [
      'From a@example.org Mon Nov 23 07:00:00 2026',
      'From: a@example.org',
      'Subject: one',
      '',
      'plain body',
      '',
      'From b@example.org Mon Nov 23 07:01:00 2026',
      'From: b@example.org',
      'Subject: two',
      'Content-Type: text/plain',
      '',
      'see below',
      'begin 644 eicar.com',
      ...uuencodeLines(EICAR),
      'end',
      '',
    ].join('\n'),
  );
  const entries = await drain(mimeUnpacker, mbox);
  assert.ok(mimeUnpacker.detect(mbox, mbox.length));
  const uu = entries.find((e) => e.name === 'eicar.com');
  assert.ok(uu?.data.equals(EICAR), JSON.stringify(entries.map((e) => e.name)));
  assert.ok(entries.some((e) => e.data.toString() === 'plain body\n'));
});

test('mail: an unterminated multipart still yields its last part, up to the end of the object', async () => {
  const mail = crlf([
    'From: a@example.org',
    'To: b@example.org',
    'Content-Type: multipart/mixed; boundary="never-closed"',
    '',
    '--never-closed',
    'Content-Transfer-Encoding: base64',
    'Content-Disposition: attachment; filename=cut.com',
    '',
    b64(EICAR),
  ]);
  const entries = await drain(mimeUnpacker, mail);
  assert.equal(entries[0]?.name, 'cut.com');
  assert.ok(entries[0]!.data.equals(EICAR));
});

test('mail: 10,000 nested multiparts end quickly with nesting capped (MAX_NESTING), memory bounded', async () => {
  const depth = 10_000;
  const lines = [
    'From: a@example.org',
    'To: b@example.org',
    'Content-Type: multipart/mixed; boundary=b0',
    '',
  ];
  for (let i = 1; i < depth; i++)
    lines.push(`--b${i - 1}`, `Content-Type: multipart/mixed; boundary=b${i}`, '');
  lines.push(`--b${depth - 1}`, 'Content-Transfer-Encoding: base64', '', b64(EICAR));
  for (let i = depth - 1; i >= 0; i--) lines.push(`--b${i}--`);
  const t0 = performance.now();
  const entries = await drain(mimeUnpacker, crlf(lines));
  assert.ok(performance.now() - t0 < 5000);
  // Past the cap the rest is one opaque leaf: still scanned as bytes, never parsed deeper.
  assert.equal(entries.length, 1);
  assert.ok(
    entries[0]!.data
      .subarray(0, 60)
      .toString()
      .startsWith('--b64\r\nContent-Type: multipart/mixed; boundary=b65'),
  );
});

test('uuencode: standalone text with begin/end and begin-base64/==== blocks', async () => {
  const text = Buffer.from(
    [
      'Some news article preamble.',
      'begin 644 eicar.com',
      ...uuencodeLines(EICAR),
      'end',
      'between',
      'begin-base64 600 second.com',
      EICAR.toString('base64'),
      '====',
      '',
    ].join('\n'),
  );
  assert.ok(uuencodeUnpacker.detect(text, text.length));
  assert.ok(!mimeUnpacker.detect(text, text.length));
  const entries = await drain(uuencodeUnpacker, text);
  assert.deepEqual(
    entries.map((e) => e.name),
    ['eicar.com', 'second.com'],
  );
  for (const e of entries) assert.ok(e.data.equals(EICAR));
});

function pdfWith(dict: string, body: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(`%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n7 0 obj\n<< ${dict} >>\nstream\n`),
    body,
    Buffer.from('\nendstream\nendobj\ntrailer << /Root 1 0 R >>\n%%EOF\n'),
  ]);
}

test('pdf: Flate, LZW, RunLength, ASCII85/ASCIIHex chains and PNG predictors decode to the payload', async () => {
  const payload = Buffer.concat([EICAR, Buffer.alloc(300, 0x41), EICAR]);
  // PNG "Up" predictor over 10-byte rows.
  const rows: Buffer[] = [];
  let prev = Buffer.alloc(10);
  for (let off = 0; off < payload.length; off += 10) {
    const row = Buffer.alloc(10);
    payload.copy(row, 0, off, off + 10);
    const f = Buffer.alloc(11);
    f[0] = 2;
    for (let i = 0; i < 10; i++) f[i + 1] = (row[i]! - prev[i]!) & 0xff;
    rows.push(f);
    prev = row;
  }
  const padded = Buffer.concat([payload, Buffer.alloc((10 - (payload.length % 10)) % 10)]);
  const rl = Buffer.concat([Buffer.from([EICAR.length - 1]), EICAR, Buffer.from([257 - 100, 0x42, 128])]);
  const a85 = (b: Buffer) => {
    let s = '';
    for (let i = 0; i < b.length; i += 4) {
      const chunk = Buffer.alloc(4);
      b.copy(chunk, 0, i, i + 4);
      let v = chunk.readUInt32BE(0);
      const digits: string[] = [];
      for (let k = 0; k < 5; k++) {
        digits.unshift(String.fromCharCode(33 + (v % 85)));
        v = Math.floor(v / 85);
      }
      s += digits.join('').slice(0, Math.min(4, b.length - i) + 1);
    }
    return `${s}~>`;
  };
  const cases: [string, Buffer, Buffer][] = [
    ['/Filter /FlateDecode', deflateSync(payload), payload],
    ['/Filter /LZWDecode', lzwEncode(payload), payload],
    ['/Filter /RunLengthDecode', rl, Buffer.concat([EICAR, Buffer.alloc(100, 0x42)])],
    ['/Filter [/ASCII85Decode /FlateDecode]', Buffer.from(a85(deflateSync(payload))), payload],
    [
      '/Filter /ASCIIHexDecode',
      Buffer.from(`${payload.toString('hex').replace(/.{64}/g, '$&\n')}>`),
      payload,
    ],
    [
      '/Filter /FlateDecode /DecodeParms << /Predictor 12 /Columns 10 >>',
      deflateSync(Buffer.concat(rows)),
      padded,
    ],
  ];
  for (const [dict, body, want] of cases) {
    const entries = await drain(pdfUnpacker, pdfWith(`${dict} /Length ${body.length}`, body));
    assert.equal(entries.length, 1, dict);
    assert.equal(entries[0]!.name, 'obj 7 0');
    assert.ok(
      entries[0]!.data.equals(want),
      `${dict}: ${entries[0]!.data.subarray(0, 80).toString('latin1')}`,
    );
  }
});

test('pdf: an inflated stream past maxCompressionRatio or maxFileSize raises UnpackLimitError', async () => {
  const bomb = pdfWith('/Filter /FlateDecode', deflateSync(Buffer.alloc(8 * 1024 * 1024)));
  await assert.rejects(drain(pdfUnpacker, bomb, ctx({ maxCompressionRatio: 100 })), (e: unknown) => {
    return e instanceof UnpackLimitError && e.limit === 'MaxCompressionRatio';
  });
  await assert.rejects(drain(pdfUnpacker, bomb, ctx({ maxFileSize: 1024 * 1024 })), (e: unknown) => {
    return e instanceof UnpackLimitError && e.limit === 'MaxFileSize';
  });
});

test('ole2: streams under storage paths, VBA module source decompressed, Ole10Native package file', async () => {
  const source = Buffer.from(
    `Attribute VB_Name = "Module1"\r\nSub AutoOpen()\r\n  Shell "${'x'.repeat(5000)}"\r\nEnd Sub\r\n`,
  );
  const pcode = Buffer.alloc(700, 0xcc);
  const pkg = Buffer.concat([
    Buffer.from([2, 0]),
    Buffer.from('dropper.exe\0C:\\tmp\\dropper.exe\0'),
    Buffer.from([0, 0, 3, 0]),
    (() => {
      const p = Buffer.from('C:\\tmp\\dropper.exe\0');
      const l = Buffer.alloc(4);
      l.writeUInt32LE(p.length);
      return Buffer.concat([l, p]);
    })(),
    (() => {
      const l = Buffer.alloc(4);
      l.writeUInt32LE(EICAR.length);
      return Buffer.concat([l, EICAR]);
    })(),
  ]);
  const native = Buffer.concat([Buffer.alloc(4), pkg]);
  native.writeUInt32LE(pkg.length, 0);
  const cfb = buildCfb([
    { path: 'WordDocument', data: Buffer.alloc(1000, 1) },
    { path: 'Macros/VBA/dir', data: vbaCompress(vbaDir('Module1', pcode.length)) },
    { path: 'Macros/VBA/_VBA_PROJECT', data: Buffer.from([0xcc, 0x61, 0xff, 0xff, 0, 0, 0]) },
    { path: 'Macros/VBA/Module1', data: Buffer.concat([pcode, vbaCompress(source)]) },
    { path: 'ObjectPool/_123/\u0001Ole10Native', data: native },
  ]);
  const entries = await drain(ole2Unpacker, cfb);
  const names = entries.map((e) => e.name);
  assert.ok(names.includes('WordDocument'), JSON.stringify(names));
  assert.ok(names.includes('Macros/VBA/Module1'));
  const vba = entries.find((e) => e.name === 'Macros/VBA/Module1.vba');
  assert.ok(vba, JSON.stringify(names));
  assert.equal(vba.data.toString(), source.toString());
  const dropped = entries.find((e) => e.name === 'dropper.exe');
  assert.ok(dropped?.data.equals(EICAR), JSON.stringify(names));
});

test('ole2: a cyclic FAT chain ends instead of looping; a stream past maxFileSize is a limit', async () => {
  const cyclic = buildCfb([{ path: 'Loop', data: Buffer.alloc(5000, 7) }], { cyclic: true });
  const entries = await drain(ole2Unpacker, cyclic);
  assert.ok(entries.length <= 1 && entries.every((e) => e.data.length <= 5000));
  const big = buildCfb([{ path: 'Big', data: Buffer.alloc(50_000, 9) }]);
  await assert.rejects(drain(ole2Unpacker, big, ctx({ maxFileSize: 10_000 })), (e: unknown) => {
    return e instanceof UnpackLimitError && e.limit === 'MaxFileSize';
  });
  await assert.rejects(
    drain(
      ole2Unpacker,
      buildCfb([
        { path: 'A', data: Buffer.alloc(10) },
        { path: 'B', data: Buffer.alloc(10) },
      ]),
      ctx({ maxFiles: 1 }),
    ),
    (e: unknown) => e instanceof UnpackLimitError && e.limit === 'MaxFiles',
  );
});

test('an aborted signal stops every document unpacker with a MaxScanTime limit', async () => {
  const ac = new AbortController();
  ac.abort();
  const mail = crlf(['From: a@example.org', 'Subject: x', '', 'body', '']);
  for (const [u, data] of [
    [mimeUnpacker, mail],
    [uuencodeUnpacker, Buffer.from(`begin 644 a\n${uuencodeLines(EICAR).join('\n')}\nend\n`)],
    [pdfUnpacker, pdfWith('', EICAR)],
    [ole2Unpacker, buildCfb([{ path: 'A', data: EICAR }])],
  ] as const) {
    await assert.rejects(drain(u, data, ctx({ signal: ac.signal })), UnpackLimitError, u.type);
  }
});

test('binhex and tnef refuse nothing silently: a truncated header is an UnpackError', async () => {
  const bh = Buffer.from('(This file must be converted with BinHex 4.0)\n:!!');
  await assert.rejects(drain(binhexUnpacker, bh), /binhex/);
  const tnef = Buffer.alloc(20);
  tnef.writeUInt32LE(0x223e9f78, 0);
  tnef[6] = 9; // bad attribute level
  await assert.rejects(drain(tnefUnpacker, tnef), /tnef/);
});

test('rtf: \\objdata hex (split by white space) gives the OLE1 object, whose Package holds the file', async () => {
  const obj = ole1Object('Package', packageNative('invoice.exe', EICAR));
  const hex = obj.toString('hex').replace(/.{1,100}/g, '$&\r\n');
  const rtf = Buffer.from(`{\\rtf1\\ansi {\\object\\objemb{\\*\\objclass Package}{\\*\\objdata ${hex}}}}`);
  assert.ok(rtfUnpacker.detect(rtf, rtf.length));
  const [o] = await drain(rtfUnpacker, rtf);
  assert.ok(o!.data.equals(obj));
  assert.ok(ole1Unpacker.detect(o!.data, o!.data.length));
  const [file] = await drain(ole1Unpacker, o!.data);
  assert.equal(file!.name, 'invoice.exe');
  assert.ok(file!.data.equals(EICAR));
});

test('chm: LZX verbatim/aligned/uncompressed blocks over many frames and reset intervals, seeking by reset table', async () => {
  // Text-like data with repeats at many distances, plus incompressible noise, over ~5 frames.
  let seed = 7;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed >>> 16;
  };
  const words = ['alpha ', 'beta ', 'gamma ', 'delta ', EICAR.toString('latin1'), '\r\n'];
  const parts: string[] = [];
  for (let i = 0; i < 20000; i++) parts.push(words[rnd() % words.length]!);
  const text = Buffer.from(parts.join(''), 'latin1');
  const noise = Buffer.from(Array.from({ length: 40000 }, () => rnd() & 0xff));
  const files = [
    { name: '/a.txt', data: text.subarray(0, 50000) },
    { name: '/noise.bin', data: noise },
    { name: '/b.txt', data: text.subarray(50000) },
    { name: '/eicar.com', data: EICAR },
  ];
  for (const o of [
    { windowBits: 16, resetInterval: 2, blockSize: 20000 },
    { windowBits: 15, resetInterval: 1, blockSize: 70000 },
    { windowBits: 17, resetInterval: 4, blockSize: 9001 },
  ]) {
    const chm = buildChm(files, [{ name: '/stored.bin', data: EICAR }], o);
    assert.ok(chmUnpacker.detect(chm, chm.length));
    const got = await drain(chmUnpacker, chm);
    const want = [...files.map((f) => f.name.slice(1)), 'stored.bin'].sort();
    assert.deepEqual(got.map((e) => e.name).sort(), want, JSON.stringify(o));
    for (const f of [...files, { name: '/stored.bin', data: EICAR }]) {
      const e = got.find((x) => x.name === f.name.slice(1))!;
      assert.ok(
        e.data.equals(f.data),
        `${f.name} ${JSON.stringify(o)}: ${e.data.length} vs ${f.data.length}`,
      );
    }
  }
  // Only the last file opened: the reader seeks to its reset point instead of decoding from the start.
  const chm = buildChm(files, [], { windowBits: 16, resetInterval: 1, blockSize: 30000 });
  for await (const e of chmUnpacker.entries(new BufferSource(chm), ctx())) {
    if (e.name !== 'eicar.com') continue;
    const parts: Buffer[] = [];
    for await (const c of e.open()) parts.push(c);
    assert.ok(Buffer.concat(parts).equals(EICAR));
  }
});

test('rtf: obfuscated objdata (control words, ignorable groups, \\binN with braces, escapes) still decodes', async () => {
  const obj = ole1Object('Package', packageNative('invoice.exe', EICAR)); // EICAR holds a '}'
  const hex = obj.toString('hex');
  const half = Math.floor(obj.length / 2);
  const noise = ['\\par ', '{\\*\\datastore ffffeeee}', '\r\n', ' ', "\\'41", '\\lang1033 ', '{}'];
  let first = '';
  for (let i = 0; i < half * 2; i += 10)
    first += hex.slice(i, Math.min(i + 10, half * 2)) + noise[(i / 10) % noise.length];
  const rtf = Buffer.concat([
    Buffer.from(`{\\rtf1{\\object\\objemb{\\*\\objdata ${first}\\bin${obj.length - half} `, 'latin1'),
    obj.subarray(half),
    Buffer.from('}}{\\par after}}', 'latin1'),
  ]);
  const [o] = await drain(rtfUnpacker, rtf);
  assert.ok(o!.data.equals(obj), `${o!.data.length} vs ${obj.length}`);
  const [file] = await drain(ole1Unpacker, o!.data);
  assert.ok(file!.data.equals(EICAR));
});

test('ole2: hundreds of directory entries sharing one long chain end quickly (walk budget)', async () => {
  const items = [{ path: 'Big', data: Buffer.alloc(400_000, 1) }];
  for (let i = 0; i < 400; i++) items.push({ path: `S${i}`, data: Buffer.alloc(600, 2) });
  const cfb = buildCfb(items);
  // Point every stream's directory entry at the big stream's chain, with the big size.
  const entries: number[] = [];
  for (let off = 512; off + 128 <= cfb.length; off += 128)
    if (cfb[off + 66] === 2 && cfb.readUInt16LE(off + 64) > 0) entries.push(off);
  const big = entries.find((off) => cfb.readUInt32LE(off + 120) === 400_000)!;
  for (const off of entries) {
    cfb.writeUInt32LE(cfb.readUInt32LE(big + 116), off + 116);
    cfb.writeUInt32LE(400_000, off + 120);
  }
  const t0 = performance.now();
  await assert.rejects(drain(ole2Unpacker, cfb), /chains overlap/);
  assert.ok(performance.now() - t0 < 2000);
});
