/**
 * Issue 6, done-when 6: the message-mode frame parser. Properties: any sequence of frames, cut into
 * any chunks, decodes to the same frames (with and without MAC); any single corrupted byte in a MAC'd
 * stream is caught before the frame it belongs to is returned; arbitrary garbage never throws
 * anything but FrameError and never returns a frame it did not verify.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  DEFAULT_MAX_PAYLOAD,
  decodeErrorPayload,
  ErrorCode,
  encodeErrorPayload,
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameError,
  FrameType,
  FrameWriter,
  HEADER_SIZE,
  MAC_SIZE,
  MacState,
} from '../../src/protocols/tunnel/frame.js';

const types = Object.values(FrameType);
const frameArb = fc.record({
  type: fc.constantFrom(...types),
  id: fc.nat({ max: 0xffffffff }),
  payload: fc.uint8Array({ maxLength: 300 }),
});

function split(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    out.push(buf.subarray(last, p));
    last = p;
  }
  out.push(buf.subarray(last));
  return out;
}

function decodeAll(chunks: Buffer[], d: FrameDecoder): { type: number; id: number; payload: Buffer }[] {
  const got: { type: number; id: number; payload: Buffer }[] = [];
  for (const c of chunks) {
    d.push(c);
    for (let f: Frame | null = d.next(); f; f = d.next()) got.push({ ...f, payload: Buffer.from(f.payload) });
  }
  return got;
}

describe('tunnel frame codec', () => {
  it('property: frames cut into arbitrary chunks decode to the same frames (no MAC)', () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (frames, cuts) => {
          const wire = Buffer.concat(frames.map((f) => encodeFrame(f.type, f.id, f.payload)));
          const d = new FrameDecoder();
          const got = decodeAll(split(wire, cuts), d);
          assert.deepEqual(
            got,
            frames.map((f) => ({ ...f, payload: Buffer.from(f.payload) })),
          );
          assert.equal(d.buffered, 0);
          d.end();
        },
      ),
    );
  });

  it('property: with a MAC, the writer and the decoder agree across chunkings and sequence numbers', () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (frames, cuts) => {
          const key = randomBytes(32);
          const out: Buffer[] = [];
          const w = new FrameWriter((b) => out.push(Buffer.from(b)), new MacState(key));
          for (const f of frames) w.push(f.type, f.id, f.payload);
          w.flush();
          const wire = Buffer.concat(out);
          assert.equal(
            wire.length,
            frames.reduce((n, f) => n + HEADER_SIZE + f.payload.length + MAC_SIZE, 0),
          );
          const got = decodeAll(split(wire, cuts), new FrameDecoder({ mac: new MacState(key) }));
          assert.deepEqual(
            got,
            frames.map((f) => ({ ...f, payload: Buffer.from(f.payload) })),
          );
        },
      ),
    );
  });

  it("property: one flipped byte anywhere in a MAC'd stream stops the decoder at or before that frame", () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { minLength: 1, maxLength: 10 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (frames, where, xor) => {
          const key = randomBytes(32);
          const mac = new MacState(key);
          const encoded = frames.map((f) => encodeFrame(f.type, f.id, f.payload, mac));
          const wire = Buffer.concat(encoded);
          const at = where % wire.length;
          wire[at]! ^= xor;
          // Which frame holds the damaged byte.
          let frameIndex = 0;
          for (let off = 0; off + encoded[frameIndex]!.length <= at; frameIndex++)
            off += encoded[frameIndex]!.length;
          const d = new FrameDecoder({ mac: new MacState(key) });
          d.push(wire);
          const got: Frame[] = [];
          let error: unknown = null;
          try {
            for (let f = d.next(); f; f = d.next()) got.push(f);
            d.end();
          } catch (e) {
            error = e;
          }
          assert.ok(error instanceof FrameError, 'the damage is detected');
          assert.ok(got.length <= frameIndex, 'no frame from the damaged one onwards is returned');
          for (let i = 0; i < got.length; i++)
            assert.deepEqual(Buffer.from(got[i]!.payload), Buffer.from(frames[i]!.payload));
        },
      ),
    );
  });

  it('property: garbage only ever yields FrameError, and the decoder stays failed afterwards', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 8 }), (chunks) => {
        const d = new FrameDecoder({ maxPayload: 1000, mac: new MacState(randomBytes(32)) });
        try {
          for (const c of chunks) {
            d.push(Buffer.from(c));
            while (d.next()) {
              // A random frame can only verify with a 2^-256 chance.
              assert.fail('garbage produced a verified frame');
            }
          }
          d.end();
        } catch (e) {
          assert.ok(e instanceof FrameError, String(e));
          assert.throws(() => d.next(), FrameError);
        }
      }),
    );
  });

  it('refuses an oversized length from the header alone, before the payload arrives', () => {
    const d = new FrameDecoder({ maxPayload: 1024 });
    const h = encodeFrame(FrameType.REQUEST, 1, Buffer.alloc(0));
    h.writeUInt32BE(1025, 8);
    d.push(h);
    assert.throws(
      () => d.next(),
      (e: FrameError) => e.code === 'ERR_FRAME_TOO_LARGE' && e.wireCode === ErrorCode.FRAME_TOO_LARGE,
    );
    const big = encodeFrame(FrameType.REQUEST, 1, Buffer.alloc(0));
    big.writeUInt32BE(0xffffffff, 8);
    const d2 = new FrameDecoder();
    d2.push(big);
    assert.throws(() => d2.next(), /exceeds the limit of 1048576/);
    assert.equal(DEFAULT_MAX_PAYLOAD, 1048576);
  });

  it('names each kind of garbage: version, type, flags; truncation at end of input', () => {
    const cases: [(b: Buffer) => void, string][] = [
      [(b) => b.writeUInt8(2, 0), 'ERR_FRAME_VERSION'],
      [(b) => b.writeUInt8(0, 1), 'ERR_FRAME_TYPE'],
      [(b) => b.writeUInt8(99, 1), 'ERR_FRAME_TYPE'],
      [(b) => b.writeUInt8(1, 3), 'ERR_FRAME_FLAGS'],
    ];
    for (const [damage, code] of cases) {
      const b = encodeFrame(FrameType.REQUEST, 7, Buffer.from('x'));
      damage(b);
      const d = new FrameDecoder();
      d.push(b);
      assert.throws(
        () => d.next(),
        (e: FrameError) => e.code === code && e.wireCode === ErrorCode.BAD_FRAME,
      );
    }
    const d = new FrameDecoder();
    d.push(encodeFrame(FrameType.REQUEST, 7, Buffer.from('hello')).subarray(0, 14));
    assert.equal(d.next(), null);
    assert.throws(
      () => d.end(),
      (e: FrameError) => e.code === 'ERR_FRAME_TRUNCATED',
    );
  });

  it('returns payload views without copying when a frame lies inside one chunk', () => {
    const wire = Buffer.concat([encodeFrame(1, 1, Buffer.from('abc')), encodeFrame(1, 2, Buffer.from('de'))]);
    const d = new FrameDecoder();
    d.push(wire);
    const f = d.next()!;
    assert.equal(f.payload.buffer, wire.buffer);
  });

  it('writer batches the frames of one tick into one write, and writes a full slab at once', async () => {
    const writes: Buffer[] = [];
    const w = new FrameWriter((b) => writes.push(b));
    for (let i = 0; i < 500; i++) w.push(FrameType.RESPONSE, i, Buffer.alloc(100, i)); // 56 KB: fits one slab
    assert.equal(writes.length, 0);
    await new Promise((r) => process.nextTick(r));
    assert.equal(writes.length, 1);
    assert.equal(decodeAll(writes, new FrameDecoder()).length, 500);
    // Thousands of frames in one tick: full slabs leave as they fill, each byte copied once.
    writes.length = 0;
    for (let i = 0; i < 5000; i++) w.push(FrameType.RESPONSE, i, Buffer.alloc(1024, i));
    assert.ok(writes.length >= 70, `${writes.length} slab-sized writes before the tick ends`);
    w.push(FrameType.RESPONSE, 5000, Buffer.alloc(200_000, 1)); // larger than a slab
    w.flush();
    const got = decodeAll(writes, new FrameDecoder());
    assert.deepEqual(
      got.map((f) => f.id),
      Array.from({ length: 5001 }, (_, i) => i),
    );
    assert.equal(got[5000]!.payload.length, 200_000);
    assert.equal(got[4999]!.payload[0], 4999 & 0xff);
  });

  it('property: the MAC is HMAC-SHA256(key, seq_u64 || frame) with seq counting from 0', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 100 }), // longer than a block: RFC 2104 hashes it
        fc.array(fc.oneof(fc.nat({ max: 3000 }), fc.constantFrom(65_536, 65_537, 200_000)), {
          minLength: 1,
          maxLength: 8,
        }),
        (keyBytes, sizes) => {
          const key = Buffer.from(keyBytes);
          const mac = new MacState(key);
          const check = new MacState(key);
          sizes.forEach((size, seq) => {
            const frame = randomBytes(size);
            const s = Buffer.alloc(8);
            s.writeBigUInt64BE(BigInt(seq));
            const want = createHmac('sha256', key).update(s).update(frame).digest();
            // Each frame at an offset inside a larger buffer, as in a received chunk.
            const at = seq % 5;
            const buf = Buffer.concat([Buffer.alloc(at, 9), frame, want]);
            assert.deepEqual(mac.next(frame), want);
            assert.ok(check.verify(buf, at, at + size));
          });
        },
      ),
      { numRuns: 60 },
    );
  });

  it('writer reuses its slab only when the sink says it let go of the bytes', () => {
    const seen: Buffer[] = [];
    let letGo = true;
    const w = new FrameWriter((b) => {
      seen.push(letGo ? Buffer.from(b) : b);
      return letGo;
    });
    for (let i = 0; i < 200; i++) w.push(FrameType.RESPONSE, i, Buffer.alloc(1000, i)); // 3+ slabs
    w.flush();
    letGo = false;
    for (let i = 200; i < 400; i++) w.push(FrameType.RESPONSE, i, Buffer.alloc(1000, i));
    w.flush();
    // Bytes handed over without a copy were never overwritten by later frames.
    const got = decodeAll(seen, new FrameDecoder());
    assert.deepEqual(
      got.map((f) => [f.id, f.payload[999]]),
      Array.from({ length: 400 }, (_, i) => [i, i & 0xff]),
    );
  });

  it('error payloads round-trip and malformed ones do not throw', () => {
    assert.deepEqual(decodeErrorPayload(encodeErrorPayload(ErrorCode.BACKEND_LOST, 'gone ✓')), {
      code: ErrorCode.BACKEND_LOST,
      message: 'gone ✓',
    });
    assert.equal(decodeErrorPayload(Buffer.alloc(1)).code, ErrorCode.BAD_FRAME);
  });
});
