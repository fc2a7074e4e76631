/**
 * fast-check properties for every document parser, each called directly (whatever its detect()
 * says): arbitrary bytes and mutated valid inputs only ever raise UnpackError/UnpackLimitError and
 * finish in bounded time; every streaming decoder gives the same output however its input is cut.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { deflateSync } from 'node:zlib';
import fc from 'fast-check';
import { BufferSource, type ObjectSource } from '../../src/engine/source.js';
import { BinHexDecoder } from '../../src/engine/unpack/binhex.js';
import {
  Base64Decoder,
  decodeBase64Whole,
  QuotedPrintableDecoder,
  UuDecoder,
} from '../../src/engine/unpack/decoders.js';
import { documentUnpackers } from '../../src/engine/unpack/documents.js';
import { mimeUnpacker } from '../../src/engine/unpack/mime.js';
import { RtfHexDecoder } from '../../src/engine/unpack/rtf.js';
import { type Line, LineSplitter, lineBatches } from '../../src/engine/unpack/textlines.js';
import { VbaDecompressor } from '../../src/engine/unpack/vba.js';
import { UnpackError, UnpackLimitError } from '../../src/errors.js';
import { EICAR, mailWithAttachment } from '../helpers/eicar.js';
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

const TESTFILES = '/usr/share/clamav-testfiles';
const fixture = (f: string): Buffer[] =>
  existsSync(`${TESTFILES}/${f}`) ? [readFileSync(`${TESTFILES}/${f}`)] : [];

const pdf = (dict: string, body: Buffer) =>
  Buffer.concat([
    Buffer.from(`%PDF-1.4\n3 0 obj\n<< ${dict} >>\nstream\n`),
    body,
    Buffer.from('\nendstream\nendobj\n'),
  ]);

/** Valid inputs per unpacker type, to be mutated. */
const SEEDS: Record<string, Buffer[]> = {
  mime: [mailWithAttachment(EICAR), ...fixture('clam.mail'), ...fixture('clam.exe.mbox.base64')],
  uuencode: [
    Buffer.from(`begin 644 e.com\n${uuencodeLines(EICAR).join('\n')}\nend\n`),
    ...fixture('clam.exe.mbox.uu'),
  ],
  binhex: fixture('clam.exe.binhex'),
  tnef: fixture('clam.tnef'),
  pdf: [
    pdf(
      '/Filter /FlateDecode /DecodeParms << /Predictor 12 /Columns 4 >>',
      deflateSync(Buffer.alloc(400, 1)),
    ),
    pdf('/Filter /LZWDecode', lzwEncode(Buffer.concat([EICAR, EICAR]))),
    pdf('/Filter [/ASCIIHexDecode /RunLengthDecode]', Buffer.from('02414243FD44 80>')),
    ...fixture('clam.pdf'),
  ],
  rtf: fixture('clam.exe.rtf'),
  ole1: [ole1Object('Package', packageNative('a.exe', EICAR)), ole1Object('Paint.Picture', EICAR)],
  ole2: [
    buildCfb([
      { path: 'Macros/VBA/dir', data: vbaCompress(vbaDir('M', 8)) },
      { path: 'Macros/VBA/_VBA_PROJECT', data: Buffer.alloc(7) },
      {
        path: 'Macros/VBA/M',
        data: Buffer.concat([Buffer.alloc(8), vbaCompress(Buffer.from('Sub A()\r\nEnd Sub'))]),
      },
    ]),
    ...fixture('clam.ole.doc'),
    ...fixture('clam.ppt'),
  ],
  'data-uri': fixture('clam.exe.html'),
  chm: [
    ...fixture('clam.chm'),
    buildChm(
      [
        { name: '/a', data: Buffer.concat([EICAR, EICAR, Buffer.alloc(500, 0x61)]) },
        { name: '/b', data: Buffer.from('abcabcabd'.repeat(300)) },
      ],
      [{ name: '/s', data: EICAR }],
      { windowBits: 15, resetInterval: 1, blockSize: 700 },
    ),
  ],
};

const LIMITS = ctx({ maxFileSize: 1024 * 1024, maxFiles: 50 });

async function survives(type: string, data: Buffer): Promise<void> {
  const u = documentUnpackers.find((x) => x.type === type)!;
  const t0 = performance.now();
  try {
    await drain(u, data, LIMITS);
  } catch (e) {
    if (!(e instanceof UnpackError || e instanceof UnpackLimitError)) throw e;
  }
  assert.ok(
    performance.now() - t0 < 5000,
    `${type} took ${performance.now() - t0} ms on ${data.length} bytes`,
  );
}

for (const u of documentUnpackers) {
  test(`${u.type}: arbitrary and mutated input only raises UnpackError/UnpackLimitError and terminates`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 3000 }), async (bytes) =>
        survives(u.type, Buffer.from(bytes)),
      ),
      { numRuns: 100 },
    );
    const seeds = SEEDS[u.type] ?? [];
    if (seeds.length === 0) return;
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: seeds.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 24 }),
        fc.nat(),
        async (which, flips, cutAt) => {
          const data = Buffer.from(seeds[which]!);
          for (const [pos, v] of flips) data[pos % data.length] = v;
          await survives(u.type, data.subarray(0, 1 + (cutAt % data.length)));
        },
      ),
      { numRuns: 150 },
    );
  });
}

function cutInto(
  d: { write(b: Buffer): Buffer | Buffer[]; end?(): Buffer | Buffer[] },
  input: Buffer,
  cuts: number[],
) {
  const out: Buffer[] = [];
  const add = (x: Buffer | Buffer[]) => out.push(...(Array.isArray(x) ? x : [x]));
  let prev = 0;
  for (const c of [...cuts, input.length]) {
    add(d.write(input.subarray(prev, c)));
    prev = c;
  }
  if (d.end) add(d.end());
  return Buffer.concat(out);
}

const cutsFor = (raw: number[], len: number) =>
  [...new Set(raw.map((c) => c % (len + 1)))].sort((a, b) => a - b);

test('one-shot base64 decoding is null or exactly what the streaming decoder gives, on any bytes', () => {
  const alphabetHeavy = fc
    .array(fc.constantFrom(...'QUJDRA+/-_=\r\n .\u00ff\u0000'.split('')), { maxLength: 300 })
    .map((a) => Buffer.from(a.join(''), 'latin1'));
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
        alphabetHeavy,
      ),
      (input) => {
        const streamed = cutInto(new Base64Decoder(), input, []);
        const whole = decodeBase64Whole(input);
        if (whole) assert.ok(whole.equals(streamed));
        // Every body with no `=` (or only trailing ones) takes the one-shot path.
        const eq = input.indexOf(0x3d);
        if (eq < 0 || /^[^A-Za-z0-9+/_-]*$/.test(input.subarray(eq).toString('latin1'))) assert.ok(whole);
      },
    ),
    { numRuns: 2000 },
  );
  const data = Buffer.from('scangate one-shot base64 \x00\xff', 'latin1');
  const mail = Buffer.from(`${data.toString('base64').replace(/.{1,8}/g, '$&\r\n')}\r\n`);
  assert.ok(decodeBase64Whole(mail)?.equals(data));
});

test('streaming decoders (base64, QP, uuencode, BinHex, VBA, RTF hex) are indifferent to how input is cut', () => {
  const binhex = fixture('clam.exe.binhex')[0];
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 2000 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      fc.string({ maxLength: 300 }),
      (bytes, rawCuts, noise) => {
        const data = Buffer.from(bytes);
        const inputs: [() => { write(b: Buffer): Buffer | Buffer[]; end?(): Buffer | Buffer[] }, Buffer][] = [
          [() => new Base64Decoder(), Buffer.from(data.toString('base64').replace(/.{1,76}/g, '$&\r\n'))],
          [() => new Base64Decoder(), Buffer.from(noise)], // arbitrary text: garbage in, same garbage out
          [() => new QuotedPrintableDecoder(), Buffer.from(`${noise}=4=\r\n=41=\n=`)],
          [() => new UuDecoder(), Buffer.from(uuencodeLines(data).join('\r\n'))],
          [() => new VbaDecompressor(), vbaCompress(data)],
          [() => new VbaDecompressor(), Buffer.concat([Buffer.from([1]), data])],
          [
            () => new RtfHexDecoder(),
            Buffer.from(`${data.toString('hex')}\\par{\\*\\x ab}\\bin3 a}b\\'41${noise}\\bin2${noise}`),
          ],
        ];
        for (const [make, input] of inputs) {
          const whole = cutInto(make(), input, []);
          assert.ok(cutInto(make(), input, cutsFor(rawCuts, input.length)).equals(whole));
        }
        assert.ok(cutInto(new UuDecoder(), Buffer.from(uuencodeLines(data).join('\n')), []).equals(data));
        assert.ok(cutInto(new VbaDecompressor(), vbaCompress(data), []).equals(data));
        if (binhex) {
          const feed = (cuts: number[]) => {
            const d = new BinHexDecoder();
            return cutInto({ write: (b) => d.feed(b) }, binhex, cuts);
          };
          assert.ok(feed(cutsFor(rawCuts, binhex.length)).equals(feed([])));
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('text line splitting gives the same lines, offsets and line-break lengths however the source is chunked', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.constantFrom('a', 'b', '\r', '\n', '\r\n', 'x'.repeat(40)), { maxLength: 200 }),
      fc.integer({ min: 1, max: 64 }),
      async (parts, chunkSize) => {
        const data = Buffer.from(parts.join(''), 'latin1');
        const whole = new BufferSource(data);
        const chunked: ObjectSource = {
          size: data.length,
          read: (p, l) => whole.read(p, l),
          stream: (s, e) => whole.stream(s, e, chunkSize),
        };
        const collect = async (src: ObjectSource) => {
          const out: string[] = [];
          for await (const batch of lineBatches(src, ctx(), 30))
            for (const { text, length, first, start, next, eol, before } of batch) {
              assert.equal(length, text.length);
              assert.equal(first, text.length ? text.charCodeAt(0) : -1);
              out.push(JSON.stringify({ text, start, next, eol, before }));
            }
          return out;
        };
        assert.deepEqual(await collect(chunked), await collect(whole));
      },
    ),
    { numRuns: 200 },
  );
});

/** A source handing out `data` in chunks of `size` bytes. */
function chunkedSource(data: Buffer, size: number): ObjectSource {
  const whole = new BufferSource(data);
  return { size: data.length, read: (p, l) => whole.read(p, l), stream: (s, e) => whole.stream(s, e, size) };
}

test('line splitting that skips to lines starting with a given byte misses none of them and reports only real lines', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.constantFrom('a', '-', '--b', '\r', '\n', '\r\n', 'x'.repeat(40)), { maxLength: 200 }),
      fc.integer({ min: 1, max: 64 }),
      fc.array(fc.boolean(), { minLength: 1, maxLength: 20 }),
      async (parts, chunkSize, skipping) => {
        const data = Buffer.from(parts.join(''), 'latin1');
        const show = (l: Line) => JSON.stringify([l.text, l.start, l.next, l.eol, l.before]);
        const all: string[] = [];
        for await (const batch of lineBatches(new BufferSource(data), ctx(), 30))
          all.push(...batch.map(show));
        const split = new LineSplitter(30);
        const got: string[] = [];
        let n = 0;
        // Skipping switched on and off between lines, as the MIME indexer does.
        const only = () => (skipping[n++ % skipping.length] ? 0x2d : -1);
        for await (const chunk of chunkedSource(data, chunkSize).stream()) {
          split.push(chunk);
          for (let l = split.next(only()); l; l = split.next(only())) got.push(show(l));
        }
        const last = split.end();
        if (last) got.push(show(last));
        for (const g of got) assert.ok(all.includes(g), `reported line ${g} is one of the object's lines`);
        const dashes = all.filter((l) => JSON.parse(l)[0].startsWith('-'));
        for (const d of dashes) assert.ok(got.includes(d), `line ${d} starting with "-" is reported`);
        if (skipping.every((b) => !b)) assert.deepEqual(got, all);
      },
    ),
    { numRuns: 300 },
  );
});

test('mail parts (base64 and quoted-printable bodies, text with "-" lines) decode the same however the mail is cut', async () => {
  const body = fc.oneof(
    fc.record({
      kind: fc.constant('base64' as const),
      data: fc.uint8Array({ maxLength: 400 }),
      width: fc.integer({ min: 4, max: 80 }),
    }),
    fc.record({
      // Quoted-printable keeps a stray CR: a body end misplaced by the line break before the
      // delimiter would show in its output.
      kind: fc.constantFrom('text' as const, 'quoted-printable' as const),
      lines: fc.array(fc.constantFrom('-', '--', '--bnd-not', '- x', 'plain', ''), { maxLength: 8 }),
    }),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.array(body, { minLength: 1, maxLength: 5 }),
      fc.integer({ min: 1, max: 97 }),
      async (bodies, chunkSize) => {
        const lines = [
          'From: a@example.org',
          'To: b@example.org',
          'Content-Type: multipart/mixed; boundary="bnd"',
          '',
          'preamble',
          '- not a delimiter',
        ];
        const expected: Buffer[] = [];
        bodies.forEach((b, i) => {
          lines.push('--bnd');
          if (b.kind === 'base64') {
            const data = Buffer.from(b.data);
            lines.push(
              `Content-Type: application/octet-stream; name="p${i}.bin"`,
              'Content-Transfer-Encoding: base64',
              '',
            );
            const text = data.toString('base64');
            for (let p = 0; p < text.length; p += b.width) lines.push(text.slice(p, p + b.width));
            expected.push(data);
          } else {
            lines.push('Content-Type: text/plain', `Content-Transfer-Encoding: ${b.kind}`, '', ...b.lines);
            expected.push(Buffer.from(b.lines.join('\r\n'), 'latin1'));
          }
        });
        lines.push('--bnd--', 'epilogue', '--bnd', '');
        const mail = Buffer.from(lines.join('\r\n'), 'latin1');
        const got: Buffer[] = [];
        for await (const e of mimeUnpacker.entries(chunkedSource(mail, chunkSize), ctx())) {
          const parts: Buffer[] = [];
          for await (const p of e.open()) parts.push(p);
          got.push(Buffer.concat(parts));
        }
        // Empty bodies are not entries.
        assert.deepEqual(
          got,
          expected.filter((b) => b.length > 0),
        );
      },
    ),
    { numRuns: 300 },
  );
});
