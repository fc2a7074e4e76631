/**
 * Mail and document unpackers: real fixtures from clamav-testfiles give back clam.exe's exact
 * bytes, decoders are indifferent to how input is chunked, and hostile input only ever raises
 * UnpackError / UnpackLimitError (fast-check).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { BufferSource } from '../../src/engine/source.js';
import {
  Base64Decoder,
  QuotedPrintableDecoder,
  type StreamDecoder,
} from '../../src/engine/unpack/decoders.js';
import { documentUnpackers } from '../../src/engine/unpack/documents.js';
import type { UnpackContext, Unpacker } from '../../src/engine/unpack/types.js';
import { UnpackError, UnpackLimitError } from '../../src/errors.js';
import { EICAR, mailWithAttachment } from '../helpers/eicar.js';

const TESTFILES = '/usr/share/clamav-testfiles';
const ctx = (over: Partial<UnpackContext> = {}): UnpackContext => ({
  maxFileSize: 10 * 1024 * 1024,
  maxFiles: 1000,
  maxCompressionRatio: 1000,
  signal: new AbortController().signal,
  ...over,
});

/** Every entry's bytes, recursing through the document unpackers (as the scanner would). */
async function extractAll(data: Buffer, depth = 0): Promise<{ name: string; data: Buffer }[]> {
  const src = new BufferSource(data);
  const u = documentUnpackers.find((x) => x.detect(data.subarray(0, 4096), data.length));
  if (!u || depth > 5) return [];
  const out: { name: string; data: Buffer }[] = [];
  for await (const e of u.entries(src, ctx())) {
    const parts: Buffer[] = [];
    for await (const c of e.open()) parts.push(c);
    const d = Buffer.concat(parts);
    out.push({ name: e.name, data: d }, ...(await extractAll(d, depth + 1)));
  }
  return out;
}

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

for (const f of [
  'clam.ole.doc',
  'clam.mail',
  'clam.exe.mbox.base64',
  'clam.exe.mbox.uu',
  'clam.exe.binhex',
  'clam.tnef',
  'clam.pdf',
  'clam.exe.rtf',
  'clam.exe.html',
  'clam.ppt',
  'clam.chm',
]) {
  test(`${f} yields clam.exe byte-exact`, async (t) => {
    if (!existsSync(`${TESTFILES}/${f}`)) {
      if (process.env.CI === 'true') throw new Error('clamav-testfiles missing');
      return t.skip('clamav-testfiles not installed');
    }
    const want = md5(readFileSync(`${TESTFILES}/clam.exe`));
    const entries = await extractAll(readFileSync(`${TESTFILES}/${f}`));
    assert.ok(
      entries.some((e) => md5(e.data) === want),
      `entries: ${entries.map((e) => `${e.name}(${e.data.length})`).join(', ')}`,
    );
  });
}

test('a multipart mail: attachment name and bytes, RFC 2231 names, quoted-printable, nested multipart', async () => {
  const simple = await extractAll(mailWithAttachment(EICAR, 'invoice.pdf.exe'));
  assert.ok(simple.some((e) => e.name === 'invoice.pdf.exe' && e.data.equals(EICAR)));

  const qpBody = 'caf=C3=A9 =\r\nsoft break=3D\r\n';
  const nested = Buffer.from(
    [
      'From: a@example.org',
      'To: b@example.org',
      'Content-Type: multipart/mixed; boundary=outer',
      '',
      '--outer',
      'Content-Type: multipart/alternative; boundary="inner"',
      '',
      '--inner',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      qpBody,
      '--inner--',
      '--outer',
      "Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.exe",
      'Content-Transfer-Encoding: base64',
      '',
      EICAR.toString('base64'),
      '--outer--',
      '',
    ].join('\r\n'),
  );
  const entries = await extractAll(nested);
  assert.ok(
    entries.some((e) => e.name === 'résumé.exe' && e.data.equals(EICAR)),
    JSON.stringify(entries.map((e) => e.name)),
  );
  assert.ok(entries.some((e) => e.data.toString('utf8') === 'café soft break=\r\n'));
});

function decodeAll(d: StreamDecoder, input: Buffer, cuts: number[]): Buffer {
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...cuts, input.length]) {
    out.push(d.write(input.subarray(prev, c)));
    prev = c;
  }
  out.push(d.end());
  return Buffer.concat(out);
}

test('base64 and quoted-printable decoders give the same output however the input is cut', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.array(fc.nat(), { maxLength: 8 }), (bytes, rawCuts) => {
      const data = Buffer.from(bytes);
      const b64 = Buffer.from(data.toString('base64').replace(/.{1,76}/g, '$&\r\n'));
      const cuts = [...new Set(rawCuts.map((c) => c % (b64.length + 1)))].sort((a, b) => a - b);
      assert.ok(decodeAll(new Base64Decoder(), b64, cuts).equals(data));
      const qp = Buffer.from(
        [...data]
          .map((b) => `=${b.toString(16).padStart(2, '0').toUpperCase()}`)
          .join('')
          .replace(/.{1,72}/g, '$&=\r\n'),
      );
      const qcuts = [...new Set(rawCuts.map((c) => c % (qp.length + 1)))].sort((a, b) => a - b);
      assert.ok(decodeAll(new QuotedPrintableDecoder(), qp, qcuts).equals(data));
    }),
    { numRuns: 300 },
  );
});

async function drainSafely(u: Unpacker, data: Buffer): Promise<void> {
  try {
    for await (const e of u.entries(
      new BufferSource(data),
      ctx({ maxFileSize: 1024 * 1024, maxFiles: 50 }),
    )) {
      for await (const _ of e.open()) {
        // drain
      }
    }
  } catch (e) {
    if (!(e instanceof UnpackError || e instanceof UnpackLimitError)) throw e;
  }
}

test('hostile input: every document unpacker only raises UnpackError/UnpackLimitError and terminates', async () => {
  const seeds: Buffer[] = [
    'clam.ole.doc',
    'clam.mail',
    'clam.exe.binhex',
    'clam.tnef',
    'clam.pdf',
    'clam.exe.rtf',
    'clam.exe.html',
    'clam.ppt',
    'clam.chm',
  ]
    .filter((f) => existsSync(`${TESTFILES}/${f}`))
    .map((f): Buffer => readFileSync(`${TESTFILES}/${f}`));
  seeds.push(mailWithAttachment(EICAR));
  await fc.assert(
    fc.asyncProperty(
      fc.nat({ max: seeds.length - 1 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 20 }),
      fc.nat(),
      async (which, flips, cutAt) => {
        const base = Buffer.from(seeds[which]!) as Buffer;
        for (const [pos, v] of flips) base[pos % base.length] = v;
        const data = base.subarray(0, 1 + (cutAt % base.length));
        for (const u of documentUnpackers)
          if (u.detect(data.subarray(0, 4096), data.length)) await drainSafely(u, data);
      },
    ),
    { numRuns: 300 },
  );
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 2000 }), async (bytes) => {
      const data = Buffer.from(bytes);
      for (const u of documentUnpackers) await drainSafely(u, data);
    }),
    { numRuns: 200 },
  );
});

test('limits: a part over maxFileSize and more parts than maxFiles raise UnpackLimitError', async () => {
  const mail = mailWithAttachment(Buffer.alloc(5000, 0x41));
  const mime = documentUnpackers.find((u) => u.type === 'mime')!;
  await assert.rejects(async () => {
    for await (const e of mime.entries(new BufferSource(mail), ctx({ maxFileSize: 1000 })))
      for await (const _ of e.open()) {
      }
  }, UnpackLimitError);
  await assert.rejects(async () => {
    for await (const _ of mime.entries(new BufferSource(mail), ctx({ maxFiles: 1 }))) {
    }
  }, UnpackLimitError);
});
