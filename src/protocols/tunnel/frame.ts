/**
 * Message-mode framing (sans-IO): bytes in, frames out; frames in, bytes out. No sockets here.
 *
 * One frame on the wire (all integers big-endian):
 *
 *   0       1       2               4               8               12
 *   +-------+-------+-------+-------+-------+-------+-------+-------+---------------+
 *   | ver=1 | type  | flags (0)     | id (u32)                      | length (u32)  |
 *   +-------+-------+---------------+-------------------------------+---------------+
 *   | payload (length bytes)                                                        |
 *   +-------------------------------------------------------------------------------+
 *   | MAC: HMAC-SHA256(key, seq_u64 || header || payload), 32 bytes — client leg only |
 *   +-------------------------------------------------------------------------------+
 *
 * `seq` is an implicit per-direction counter starting at 0 (never sent), so a frame cannot be dropped,
 * replayed or reordered without the next MAC failing. The MAC keys come from the TLS exporter (RFC 5705),
 * see keys.ts. The backend leg uses the same header with no MAC.
 *
 * The hot path is built for many small frames per TCP read: a frame that lies inside one chunk is
 * returned as a view (no copy); only a frame that spans chunks is assembled once. Frames going out are
 * appended to a slab and handed to the socket once per tick (see FrameWriter).
 */
import crypto, { createHash, createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import type { Writable } from 'node:stream';
import { ScangateError } from '../../errors.js';

export const FRAME_VERSION = 1;
export const HEADER_SIZE = 12;
export const MAC_SIZE = 32;

export const FrameType = {
  /** client → gateway → backend: a request; `id` is chosen by the sender and echoed in the answer. */
  REQUEST: 1,
  /** backend → gateway → client: the answer to request `id`. */
  RESPONSE: 2,
  /** The request `id` failed; payload: u16 error code + UTF-8 text. The connection stays up. */
  ERROR: 3,
  /** Liveness probe; the peer answers PONG with the same id and payload. */
  PING: 4,
  PONG: 5,
  /** The sender closes the connection after this frame; payload: u16 code + UTF-8 text (0 = normal). */
  GOAWAY: 6,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

/** Error codes carried by ERROR and GOAWAY frames (documented in the README, "mTLS tunnel"). */
export const ErrorCode = {
  NONE: 0,
  BAD_FRAME: 1,
  BAD_MAC: 2,
  FRAME_TOO_LARGE: 3,
  UNEXPECTED_FRAME: 4,
  HEARTBEAT_TIMEOUT: 5,
  BACKEND_UNAVAILABLE: 16,
  BACKEND_LOST: 17,
  TIMEOUT: 18,
  OVERLOADED: 19,
  INFECTED: 32,
  SCAN_FAILED: 33,
  SHUTTING_DOWN: 48,
} as const;
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

export const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

export interface Frame {
  type: FrameTypeValue;
  id: number;
  /**
   * A view into the received bytes (no copy). Received chunks are never reused, so the view stays
   * valid; it keeps its whole chunk alive, so copy it to keep a small payload for long.
   */
  payload: Buffer;
}

export type FrameErrorCode =
  | 'ERR_FRAME_VERSION'
  | 'ERR_FRAME_TYPE'
  | 'ERR_FRAME_FLAGS'
  | 'ERR_FRAME_TOO_LARGE'
  | 'ERR_FRAME_MAC'
  | 'ERR_FRAME_TRUNCATED';

/** The peer sent bytes that are not a valid frame. The connection must be closed. */
export class FrameError extends ScangateError {
  constructor(
    code: FrameErrorCode,
    message: string,
    /** What the GOAWAY to the peer says. */
    readonly wireCode: ErrorCodeValue,
  ) {
    super(code, message);
  }
}

/** Frames up to this size are MAC'd through one-shot hashes over a reused buffer (see MacState). */
const SCRATCH_MAX = 64 * 1024;
const SHA256_BLOCK = 64;
const INNER_PREFIX = SHA256_BLOCK + 8; // key ^ ipad, then seq
/** One-shot SHA-256 (Node >= 20.12); older releases take the createHmac path for every frame. */
const oneShot: typeof crypto.hash | undefined = crypto.hash;

/**
 * Per-direction MAC state: the key and the implicit sequence number.
 *
 * The MAC is plain HMAC-SHA256 (RFC 2104), computed as its two hashes,
 * H((K ^ opad) || H((K ^ ipad) || seq || frame)), with one-shot crypto.hash calls on buffers laid out
 * once per state, with latin1-string digests: no Hmac object and no digest Buffer per frame (each
 * allocation behind them — the C++ object, the OpenSSL context, the ArrayBuffer — cost more than
 * the hashing itself: ~2.4 -> ~1.2 µs for a 1 KB frame). Same bytes as createHmac (unit-tested
 * against it); frames above SCRATCH_MAX go through createHmac rather than being copied.
 */
export class MacState {
  /** The 64-bit sequence number as two 32-bit halves (a BigInt would allocate on every frame). */
  private seqHi = 0;
  private seqLo = 0;
  /** Imported once; a raw Buffer key would be re-imported by every createHmac call. */
  private readonly key: KeyObject;
  /** [K ^ ipad][seq][frame…]: the inner hash's input. */
  private inner: Buffer;
  /** [K ^ opad][inner digest]: the outer hash's input. */
  private readonly outer = Buffer.allocUnsafe(SHA256_BLOCK + MAC_SIZE);

  constructor(key: Buffer) {
    if (key.length < 32) throw new RangeError('MAC key must be at least 32 bytes');
    this.key = createSecretKey(key);
    // RFC 2104 §2: a key longer than the block is hashed first, a shorter one padded with zeros.
    const k = key.length > SHA256_BLOCK ? createHash('sha256').update(key).digest() : key;
    this.inner = Buffer.alloc(INNER_PREFIX + 2048);
    this.outer.fill(0, 0, SHA256_BLOCK);
    k.copy(this.inner);
    k.copy(this.outer);
    for (let i = 0; i < SHA256_BLOCK; i++) {
      this.inner[i]! ^= 0x36;
      this.outer[i]! ^= 0x5c;
    }
  }

  /** MAC of the next frame in this direction (advances the sequence number). */
  next(frame: Uint8Array): Buffer {
    const b = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
    return Buffer.from(this.digest(b, 0, b.length), 'latin1');
  }

  /** Writes the MAC of the next frame, `buf[start, end)`, at `buf[end]`. */
  sign(buf: Buffer, start: number, end: number): void {
    buf.write(this.digest(buf, start, end), end, MAC_SIZE, 'latin1');
  }

  /** Whether `buf[end, end + 32)` is the MAC of the next frame, `buf[start, end)`. */
  verify(buf: Buffer, start: number, end: number): boolean {
    const mac = this.digest(buf, start, end);
    // No early exit: the time does not depend on where the first difference is.
    let diff = 0;
    for (let i = 0; i < MAC_SIZE; i++) diff |= mac.charCodeAt(i) ^ buf[end + i]!;
    return diff === 0;
  }

  /** The MAC as a 32-character latin1 string; advances the sequence number. */
  private digest(buf: Buffer, start: number, end: number): string {
    const len = end - start;
    let inner = this.inner;
    inner.writeUInt32BE(this.seqHi, SHA256_BLOCK);
    inner.writeUInt32BE(this.seqLo, SHA256_BLOCK + 4);
    if (this.seqLo === 0xffffffff) {
      this.seqLo = 0;
      this.seqHi++;
    } else this.seqLo++;
    if (!oneShot || len > SCRATCH_MAX)
      return createHmac('sha256', this.key)
        .update(inner.subarray(SHA256_BLOCK, INNER_PREFIX))
        .update(buf.subarray(start, end))
        .digest('binary'); // = latin1: a string, no Buffer
    if (inner.length < INNER_PREFIX + len) {
      const grown = Buffer.allocUnsafe(INNER_PREFIX + SCRATCH_MAX);
      inner.copy(grown, 0, 0, INNER_PREFIX);
      this.inner = inner = grown;
    }
    buf.copy(inner, INNER_PREFIX, start, end);
    this.outer.write(
      oneShot('sha256', inner.subarray(0, INNER_PREFIX + len), 'binary'),
      SHA256_BLOCK,
      'latin1',
    );
    return oneShot('sha256', this.outer, 'binary');
  }
}

const TYPES_VALID = new Uint8Array(256);
for (const t of Object.values(FrameType)) TYPES_VALID[t] = 1;

export interface DecoderOptions {
  maxPayload?: number;
  /** Verify a trailing MAC on every frame with this state (client leg); none on the backend leg. */
  mac?: MacState;
}

/**
 * Incremental frame parser. push() bytes, then call next() until it returns null (need more bytes).
 * The first invalid frame throws FrameError and leaves the decoder failed: every later call throws the
 * same error, so a caller cannot accidentally keep going past a bad frame.
 */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);
  private off = 0;
  /** Chunks received while a frame spanning several chunks is incomplete. */
  private parts: Buffer[] = [];
  private partsLen = 0;
  private failed: FrameError | null = null;
  private readonly maxPayload: number;
  private readonly mac: MacState | undefined;
  private readonly trailer: number;

  constructor(opts: DecoderOptions = {}) {
    this.maxPayload = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    this.mac = opts.mac;
    this.trailer = opts.mac ? MAC_SIZE : 0;
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.buf.length - this.off + this.partsLen;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.off >= this.buf.length && this.partsLen === 0) {
      this.buf = chunk;
      this.off = 0;
    } else {
      this.parts.push(chunk);
      this.partsLen += chunk.length;
    }
  }

  /** The next complete, verified frame, or null when more bytes are needed. */
  next(): Frame | null {
    if (this.failed) throw this.failed;
    let avail = this.buf.length - this.off;
    if (avail < HEADER_SIZE) {
      if (avail + this.partsLen < HEADER_SIZE) return null;
      this.coalesce();
      avail = this.buf.length - this.off;
    }
    const b = this.buf;
    const o = this.off;
    // Header checks come before waiting for the payload: an oversized or garbage header is refused
    // at once instead of after the peer has made us buffer its claimed length.
    if (b[o] !== FRAME_VERSION) return this.fail('ERR_FRAME_VERSION', `unknown frame version ${b[o]}`);
    const type = b[o + 1]!;
    if (TYPES_VALID[type] !== 1) return this.fail('ERR_FRAME_TYPE', `unknown frame type ${type}`);
    if (b[o + 2] !== 0 || b[o + 3] !== 0) return this.fail('ERR_FRAME_FLAGS', 'reserved flags set');
    const length = b.readUInt32BE(o + 8);
    if (length > this.maxPayload)
      return this.fail(
        'ERR_FRAME_TOO_LARGE',
        `frame of ${length} bytes exceeds the limit of ${this.maxPayload}`,
      );
    const total = HEADER_SIZE + length + this.trailer;
    if (avail < total) {
      if (avail + this.partsLen < total) return null;
      this.coalesce();
      return this.next();
    }
    const id = b.readUInt32BE(o + 4);
    const body = o + HEADER_SIZE + length;
    if (this.mac && !this.mac.verify(b, o, body))
      return this.fail('ERR_FRAME_MAC', `frame ${id}: MAC does not verify`);
    this.off = o + total;
    return { type: type as FrameTypeValue, id, payload: b.subarray(o + HEADER_SIZE, body) };
  }

  /** Call at end of input: bytes of an incomplete frame left over are a truncation. */
  end(): void {
    if (this.failed) throw this.failed;
    if (this.buffered > 0)
      this.fail('ERR_FRAME_TRUNCATED', `connection ended inside a frame (${this.buffered} bytes pending)`);
  }

  private coalesce(): void {
    this.buf = Buffer.concat([this.buf.subarray(this.off), ...this.parts]);
    this.off = 0;
    this.parts = [];
    this.partsLen = 0;
  }

  private fail(code: FrameErrorCode, message: string): never {
    const wire =
      code === 'ERR_FRAME_MAC'
        ? ErrorCode.BAD_MAC
        : code === 'ERR_FRAME_TOO_LARGE'
          ? ErrorCode.FRAME_TOO_LARGE
          : ErrorCode.BAD_FRAME;
    this.failed = new FrameError(code, message, wire);
    throw this.failed;
  }
}

const SLAB = 64 * 1024;

/**
 * Serialises frames into a slab and hands the bytes to `sink` in as few writes as possible: frames
 * pushed during one tick leave together on the next process.nextTick (one TLS record batch, one
 * syscall) instead of one write per frame. The slab moves forward after each flush, so bytes still
 * queued in the socket are never overwritten — unless the sink says it is done with them (returns
 * true: the socket wrote them at once), then the slab is written again from its start. A fresh 64 KB
 * slab per 60-odd 1 KB frames is external memory V8 counts toward its next full collection, which
 * traces every long-lived object of the process (the signature database).
 */
export class FrameWriter {
  private slab = Buffer.allocUnsafe(SLAB);
  private start = 0;
  private end = 0;
  private scheduled = false;
  private readonly trailer: number;
  private readonly flushBound = () => this.flush();

  constructor(
    /** Returns true when it no longer needs `bytes` (they were copied out), so the slab can be reused. */
    private readonly sink: (bytes: Buffer) => unknown,
    private readonly mac?: MacState,
  ) {
    this.trailer = mac ? MAC_SIZE : 0;
  }

  /** Bytes waiting for the next flush. */
  get pending(): number {
    return this.end - this.start;
  }

  push(type: FrameTypeValue, id: number, payload?: Uint8Array): void {
    const len = payload ? payload.length : 0;
    const need = HEADER_SIZE + len + this.trailer;
    if (this.slab.length - this.end < need) this.grow(need);
    const s = this.slab;
    const o = this.end;
    s[o] = FRAME_VERSION;
    s[o + 1] = type;
    s[o + 2] = 0;
    s[o + 3] = 0;
    s.writeUInt32BE(id >>> 0, o + 4);
    s.writeUInt32BE(len, o + 8);
    if (len) s.set(payload!, o + HEADER_SIZE);
    const body = o + HEADER_SIZE + len;
    if (this.mac) this.mac.sign(s, o, body);
    this.end = o + need;
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.flushBound);
    }
  }

  /** An ERROR or GOAWAY frame: u16 code followed by UTF-8 text. */
  pushError(
    type: typeof FrameType.ERROR | typeof FrameType.GOAWAY,
    id: number,
    code: number,
    text: string,
  ): void {
    this.push(type, id, encodeErrorPayload(code, text));
  }

  flush(): void {
    this.scheduled = false;
    if (this.end === this.start) return;
    const out = this.slab.subarray(this.start, this.end);
    this.start = this.end;
    if (this.sink(out) === true && this.start === this.end) {
      this.start = 0;
      this.end = 0;
    }
  }

  private grow(need: number): void {
    // The slab is full: what it holds leaves now (a write of at least a slab is a good batch anyway)
    // and a fresh slab takes the rest. Moving pending frames to a bigger slab instead would copy
    // them again at every growth: quadratic when thousands of frames are pushed in one tick.
    if (this.end > this.start) this.flush();
    if (this.end === 0 && this.slab.length >= need) return; // the sink let go of it: reuse
    this.slab = Buffer.allocUnsafe(Math.max(SLAB, need));
    this.start = 0;
    this.end = 0;
  }
}

/** A FrameWriter sink writing to a socket; true when the socket wrote the bytes at once. */
export function writeThrough(socket: Writable): (bytes: Buffer) => boolean {
  return (bytes) => {
    socket.write(bytes);
    return socket.writableLength === 0;
  };
}

/** Encodes one frame into a fresh buffer (tests, one-off frames). */
export function encodeFrame(
  type: number,
  id: number,
  payload: Uint8Array = Buffer.alloc(0),
  mac?: MacState,
): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + payload.length + (mac ? MAC_SIZE : 0));
  out[0] = FRAME_VERSION;
  out[1] = type;
  out.writeUInt16BE(0, 2);
  out.writeUInt32BE(id >>> 0, 4);
  out.writeUInt32BE(payload.length, 8);
  out.set(payload, HEADER_SIZE);
  if (mac) mac.sign(out, 0, HEADER_SIZE + payload.length);
  return out;
}

export function encodeErrorPayload(code: number, text: string): Buffer {
  const t = Buffer.from(text, 'utf8');
  const out = Buffer.allocUnsafe(2 + t.length);
  out.writeUInt16BE(code, 0);
  t.copy(out, 2);
  return out;
}

export function decodeErrorPayload(payload: Buffer): { code: number; message: string } {
  if (payload.length < 2) return { code: ErrorCode.BAD_FRAME, message: 'malformed error payload' };
  return { code: payload.readUInt16BE(0), message: payload.toString('utf8', 2) };
}

/** The name of an ErrorCode value, for messages and events. */
export function errorCodeName(code: number): string {
  for (const [k, v] of Object.entries(ErrorCode)) if (v === code) return k;
  return `CODE_${code}`;
}
