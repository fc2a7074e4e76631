import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { ScanInput, Scanner } from '../../src/engine/types.js';
import {
  type BodyScanOptions,
  contentCodings,
  decodedLaneCodings,
  ScannedBody,
} from '../../src/protocols/http/body-scanner.js';
import { EICAR, EICAR_NAME } from '../helpers/eicar.js';

/** A sink with only begin() and write(), as the ICAP server uses it. */
class RecordingSink {
  begun = false;
  chunks: Buffer[] = [];
  /** Bytes released before finish() was called. */
  releasedEarly = 0;
  finishing = false;
  /** The batching sink marks the end of a delivered message; this one never learns it. */
  ended = false;
  async begin() {
    assert.ok(!this.begun, 'begin twice');
    this.begun = true;
  }
  async write(c: Buffer) {
    assert.ok(this.begun, 'write before begin');
    this.chunks.push(Buffer.from(c));
    if (!this.finishing) this.releasedEarly += c.length;
  }
  get data() {
    return Buffer.concat(this.chunks);
  }
}

/** A sink with writeBatch(), as the HTTP session uses it (head and message end in the same write). */
class BatchSink extends RecordingSink {
  writes = 0;
  async writeBatch(chunks: Buffer[], first: boolean, last: boolean) {
    assert.equal(first, !this.begun, 'first batch flagged exactly once');
    assert.ok(!this.ended, 'write after the end');
    this.begun = true;
    this.writes++;
    for (const c of chunks) {
      this.chunks.push(Buffer.from(c));
      if (!this.finishing) this.releasedEarly += c.length;
    }
    if (last) this.ended = true;
  }
}

const SINKS = [
  ['begin/write sink', () => new RecordingSink()],
  ['batching sink', () => new BatchSink()],
] as const;

/** Counts scans and what they were given, around the real engine. */
class CountingScanner implements Scanner {
  inputs: string[] = [];
  constructor(private readonly inner: Scanner) {}
  scan(input: ScanInput, ctx?: Parameters<Scanner['scan']>[1]) {
    this.inputs.push(Buffer.isBuffer(input) ? 'buffer' : 'path' in input ? 'path' : 'stream');
    return this.inner.scan(input, ctx);
  }
  version() {
    return this.inner.version();
  }
}

let scanner: Scanner;
before(async () => {
  scanner = await createBuiltinScanner();
});

function opts(o: Partial<BodyScanOptions> = {}): BodyScanOptions {
  return { scanner, holdLimit: 64 * 1024, keepBack: 8 * 1024, name: 'obj', ...o };
}

async function run(body: Buffer, o: Partial<BodyScanOptions>, chunk = 4096, sink = new RecordingSink()) {
  const sb = new ScannedBody(opts(o), sink);
  for (let i = 0; i < body.length; i += chunk) await sb.write(body.subarray(i, i + chunk));
  sink.finishing = true;
  const outcome = await sb.finish();
  return { sink, outcome };
}

describe('ScannedBody', () => {
  it('holds a clean body below holdLimit until the verdict, then releases it whole', async () => {
    const body = randomBytes(50_000);
    const { sink, outcome } = await run(body, { size: body.length });
    assert.equal(outcome.deliver, true);
    assert.equal(outcome.streamed, true);
    assert.equal(sink.releasedEarly, 0);
    assert.ok(sink.data.equals(body));
  });

  it('never releases a byte of an infected held body', async () => {
    const body = Buffer.concat([randomBytes(10_000), EICAR, randomBytes(10_000)]);
    const { sink, outcome } = await run(body, { size: body.length });
    assert.equal(outcome.deliver, false);
    assert.equal(outcome.streamed, false);
    assert.equal(sink.begun, false);
    assert.ok(outcome.verdict.status === 'infected' && outcome.verdict.signature === EICAR_NAME);
  });

  it('streams a body above holdLimit with only keepBack held, and delivers all of it when clean', async () => {
    const body = randomBytes(300_000);
    const { sink, outcome } = await run(body, { size: body.length });
    assert.equal(outcome.deliver, true);
    assert.equal(sink.releasedEarly, body.length - 8 * 1024);
    assert.ok(sink.data.equals(body));
  });

  it('cuts a streamed infected body: the tail holding the signature is never released', async () => {
    const body = Buffer.concat([randomBytes(300_000), EICAR]);
    const { sink, outcome } = await run(body, { size: body.length });
    assert.equal(outcome.deliver, false);
    assert.equal(outcome.streamed, true);
    assert.ok(sink.data.length <= body.length - 8 * 1024);
    assert.equal(sink.data.indexOf(EICAR.subarray(0, 20)), -1);
  });

  it('switches from holding to streaming when an unknown-length body outgrows holdLimit', async () => {
    const body = randomBytes(200_000);
    const { sink, outcome } = await run(body, {}, 10_000);
    assert.equal(outcome.deliver, true);
    assert.ok(sink.releasedEarly > 0 && sink.releasedEarly <= body.length - 8 * 1024);
    assert.ok(sink.data.equals(body));
  });

  for (const [enc, label, fn] of [
    ['gzip', 'gzip', gzipSync],
    ['deflate', 'zlib-wrapped deflate', deflateSync],
    ['deflate', 'raw deflate', deflateRawSync],
    ['br', 'brotli', brotliCompressSync],
    ['gzip, br', 'gzip then brotli', (b: Buffer) => brotliCompressSync(gzipSync(b))],
  ] as const) {
    it(`finds EICAR under Content-Encoding "${enc}" (${label}) and forwards the encoded bytes`, async () => {
      const encoded = fn(Buffer.concat([Buffer.from('hello '), EICAR]));
      const { outcome } = await run(encoded, { contentEncoding: enc, size: encoded.length });
      assert.ok(outcome.verdict.status === 'infected', JSON.stringify(outcome.verdict));
      const clean = fn(randomBytes(5000));
      const ok = await run(clean, { contentEncoding: enc, size: clean.length });
      assert.equal(ok.outcome.deliver, true);
      assert.ok(ok.sink.data.equals(clean));
    });
  }

  it('scans raw bytes too when the declared encoding is a lie', async () => {
    const { outcome } = await run(EICAR, { contentEncoding: 'br', size: EICAR.length });
    assert.ok(outcome.verdict.status === 'infected');
  });

  it('applies the onError policy to scanner errors', async () => {
    const failing: Scanner = {
      scan: async (input) => {
        if (typeof (input as NodeJS.ReadableStream).resume === 'function')
          (input as NodeJS.ReadableStream).resume();
        return { status: 'error', reason: 'backend down' };
      },
      version: () => ({ engine: 'x', signatures: 0, databaseVersion: '0' }),
    };
    const body = randomBytes(1000);
    const blocked = new ScannedBody(opts({ scanner: failing }), new RecordingSink());
    await blocked.write(body);
    const b = await blocked.finish(false);
    assert.equal(b.deliver, false);
    assert.equal(b.verdict.status, 'error');
    const sink = new RecordingSink();
    const allowed = new ScannedBody(opts({ scanner: failing }), sink);
    await allowed.write(body);
    const a = await allowed.finish(true);
    assert.equal(a.deliver, true);
    assert.ok(sink.data.equals(body));
  });

  for (const [label, make] of SINKS) {
    it(`${label}: a delivered body ends the message once; a blocked one never does`, async () => {
      const clean = randomBytes(100_000);
      for (const size of [clean.length, undefined]) {
        const held = await run(clean.subarray(0, 30_000), { size: size && 30_000 }, 4096, make());
        assert.ok(held.sink.data.equals(clean.subarray(0, 30_000)));
        const streamed = await run(clean, { size }, 7000, make());
        assert.ok(streamed.sink.data.equals(clean));
        if (held.sink instanceof BatchSink) {
          assert.ok(held.sink.ended && streamed.sink.ended);
          assert.equal(held.sink.writes, 1, 'a held body leaves in one write');
        }
      }
      const infected = Buffer.concat([randomBytes(200_000), EICAR]);
      const cut = await run(infected, { size: infected.length }, 4096, make());
      assert.equal(cut.outcome.deliver, false);
      assert.equal(cut.sink.ended, false);
    });
  }

  describe('held bodies larger than spoolMemory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sg-held-'));
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('are held in a temp file, scanned by path, released byte-identical, and the file is removed', async () => {
      const counting = new CountingScanner(scanner);
      const body = randomBytes(50_000);
      const { sink, outcome } = await run(
        body,
        { scanner: counting, spoolDir: dir, spoolMemory: 10_000 },
        3000,
        new BatchSink(),
      );
      assert.equal(outcome.deliver, true);
      assert.equal(sink.releasedEarly, 0);
      assert.ok(sink.data.equals(body));
      assert.deepEqual(counting.inputs, ['path']);
      assert.deepEqual(readdirSync(dir), []);
    });

    it('an infected one is never released and its file is removed too', async () => {
      const body = Buffer.concat([randomBytes(30_000), EICAR, randomBytes(30_000)]);
      const { sink, outcome } = await run(body, { spoolDir: dir, spoolMemory: 10_000 }, 5000);
      assert.equal(outcome.deliver, false);
      assert.equal(sink.begun, false);
      assert.deepEqual(readdirSync(dir), []);
    });

    it('switching to streaming reads the held file back in order', async () => {
      const body = randomBytes(150_000);
      const { sink, outcome } = await run(body, { spoolDir: dir, spoolMemory: 10_000 }, 6000);
      assert.equal(outcome.deliver, true);
      assert.ok(sink.releasedEarly > 0);
      assert.ok(sink.data.equals(body));
      assert.deepEqual(readdirSync(dir), []);
    });
  });

  it('scans a small held body once, as a Buffer; gzip needs no second lane, br does', async () => {
    const plain = new CountingScanner(scanner);
    await run(randomBytes(1000), { scanner: plain, size: 1000 });
    assert.deepEqual(plain.inputs, ['buffer']);
    const gz = new CountingScanner(scanner);
    const gzBody = gzipSync(gzipSync(Buffer.concat([Buffer.from('x'), EICAR])));
    const g = await run(gzBody, { scanner: gz, contentEncoding: 'gzip, x-gzip', size: gzBody.length });
    assert.deepEqual(gz.inputs, ['buffer']);
    assert.ok(g.outcome.verdict.status === 'infected', 'the engine unpacks both gzip layers');
    const br = new CountingScanner(scanner);
    const brBody = brotliCompressSync(EICAR);
    const b = await run(brBody, { scanner: br, contentEncoding: 'br', size: brBody.length });
    assert.deepEqual(br.inputs, ['buffer', 'stream']);
    assert.ok(b.outcome.verdict.status === 'infected');
  });

  it('finds EICAR in a streamed gzip body through the raw lane alone', async () => {
    const gz = gzipSync(Buffer.concat([randomBytes(300_000), EICAR]), { level: 0 });
    const counting = new CountingScanner(scanner);
    const { sink, outcome } = await run(gz, { scanner: counting, contentEncoding: 'gzip', size: gz.length });
    assert.deepEqual(counting.inputs, ['stream']);
    assert.ok(outcome.verdict.status === 'infected', JSON.stringify(outcome.verdict));
    assert.ok(sink.data.length <= gz.length - 8 * 1024);
  });

  it('reads Content-Encoding: outermost coding first, unknown codings leave the raw lane alone', () => {
    assert.deepEqual(contentCodings(undefined), []);
    assert.deepEqual(contentCodings('identity'), []);
    assert.deepEqual(contentCodings('gzip, br'), ['br', 'gzip']);
    assert.deepEqual(contentCodings(' Deflate '), ['deflate']);
    assert.equal(contentCodings('gzip, zstd'), null);
    assert.deepEqual(decodedLaneCodings('gzip'), []);
    assert.deepEqual(decodedLaneCodings('x-gzip, gzip'), []);
    assert.deepEqual(decodedLaneCodings('gzip, br'), ['br', 'gzip']);
    assert.deepEqual(decodedLaneCodings('deflate'), ['deflate']);
    assert.deepEqual(decodedLaneCodings('compress'), []);
  });

  it('property: clean bodies arrive whole; infected ones never whole, held ones not at all', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 60_000 }),
        fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: null }),
        fc.integer({ min: 1, max: 40_000 }),
        fc.integer({ min: 1, max: 50_000 }),
        fc.integer({ min: 0, max: 20_000 }),
        fc.boolean(),
        fc.boolean(),
        async (len, eicarAt, chunk, holdLimit, keepBack, declareSize, batching) => {
          const random = randomBytes(len);
          const body =
            eicarAt === null
              ? random
              : Buffer.concat([
                  random.subarray(0, Math.floor(eicarAt * len)),
                  EICAR,
                  random.subarray(Math.floor(eicarAt * len)),
                ]);
          const sink = batching ? new BatchSink() : new RecordingSink();
          const { outcome } = await run(
            body,
            { holdLimit, keepBack, spoolMemory: 16_384, ...(declareSize ? { size: body.length } : {}) },
            chunk,
            sink,
          );
          if (eicarAt === null) {
            assert.equal(outcome.deliver, true);
            assert.ok(sink.data.equals(body));
            if (batching) assert.ok(sink.ended);
            return;
          }
          assert.equal(outcome.deliver, false);
          assert.equal(sink.ended, false);
          if (!outcome.streamed) assert.equal(sink.data.length, 0);
          else assert.ok(sink.data.length <= body.length - keepBack);
          // Released bytes are always a prefix of the body.
          assert.ok(sink.data.equals(body.subarray(0, sink.data.length)));
        },
      ),
      { numRuns: 30 },
    );
  });
});
