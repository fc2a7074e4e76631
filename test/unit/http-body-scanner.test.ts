import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { Scanner } from '../../src/engine/types.js';
import { type BodyScanOptions, ScannedBody } from '../../src/protocols/http/body-scanner.js';
import { EICAR, EICAR_NAME } from '../helpers/eicar.js';

class RecordingSink {
  begun = false;
  chunks: Buffer[] = [];
  /** Bytes released before finish() was called. */
  releasedEarly = 0;
  finishing = false;
  async begin() {
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

let scanner: Scanner;
before(async () => {
  scanner = await createBuiltinScanner();
});

function opts(o: Partial<BodyScanOptions> = {}): BodyScanOptions {
  return { scanner, holdLimit: 64 * 1024, keepBack: 8 * 1024, name: 'obj', ...o };
}

async function run(body: Buffer, o: Partial<BodyScanOptions>, chunk = 4096) {
  const sink = new RecordingSink();
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
});
