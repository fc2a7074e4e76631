/**
 * What does a fresh byte stream carry? Sans-IO: bytes in, a decision out (peekFirstBytes is the one
 * thin I/O helper, at the end). Used before anyone is answered, so every function here must accept
 * any prefix of any byte string without throwing and say "need more" until it can decide.
 *
 * parseClientHello reads the TLS record layer (RFC 8446 §5.1) and reassembles the ClientHello
 * handshake message (§4.1.2) even when it is fragmented over several records or a record is split
 * over several TCP segments, then extracts SNI (RFC 6066 §3), ALPN (RFC 7301 §3.1) and
 * supported_versions (RFC 8446 §4.2.1).
 */
import type { Socket } from 'node:net';

export interface ClientHello {
  /** server_name host_name, lower-cased; absent when the client sent none. */
  sni?: string;
  /** ALPN protocol names in the client's order of preference. */
  alpn: string[];
  /** ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3). */
  legacyVersion: number;
  /** supported_versions extension (0x0304 = TLS 1.3); empty when absent. */
  supportedVersions: number[];
}

export type ClientHelloResult =
  | { state: 'need-more' }
  | { state: 'not-tls' }
  /** `length`: bytes of the TLS records that carried the ClientHello (what a splice must forward first). */
  | { state: 'ok'; hello: ClientHello; length: number }
  | { state: 'malformed'; reason: string };

const RECORD_HEADER = 5;
const CONTENT_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
/** RFC 8446 §5.1: a TLSPlaintext fragment is at most 2^14 bytes. */
const MAX_RECORD = 16_384;
/**
 * Largest ClientHello we accept. Real ones are 200 B–2 KB (about 1.8 KB with a post-quantum key share);
 * the cap keeps a hostile peer from making us buffer the 16 MB a 24-bit length allows.
 */
export const MAX_CLIENT_HELLO = 64 * 1024;

const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const EXT_SUPPORTED_VERSIONS = 43;

export function parseClientHello(buf: Buffer): ClientHelloResult {
  if (buf.length === 0) return { state: 'need-more' };
  if (buf[0] !== CONTENT_HANDSHAKE) return { state: 'not-tls' };
  if (buf.length >= 2 && buf[1] !== 3) return { state: 'not-tls' };
  if (buf.length >= 3 && buf[2]! > 4) return { state: 'not-tls' };

  // Reassemble the handshake layer from consecutive handshake records (§5.1: a message may be split
  // over several records; records of another content type may not interleave with a fragmented one).
  const fragments: Buffer[] = [];
  let handshakeBytes = 0;
  let needed = -1; // total handshake bytes (4-byte header + body) once the header is known
  let offset = 0;
  for (;;) {
    if (buf.length - offset < RECORD_HEADER) return { state: 'need-more' };
    const type = buf[offset]!;
    const major = buf[offset + 1]!;
    const minor = buf[offset + 2]!;
    const recordLength = buf.readUInt16BE(offset + 3);
    if (type !== CONTENT_HANDSHAKE) {
      return { state: 'malformed', reason: `record of content type ${type} inside the ClientHello` };
    }
    if (major !== 3 || minor > 4) {
      return { state: 'malformed', reason: `record version ${major}.${minor} is not TLS` };
    }
    if (recordLength === 0) return { state: 'malformed', reason: 'empty handshake record' };
    if (recordLength > MAX_RECORD) {
      return { state: 'malformed', reason: `record length ${recordLength} above 2^14` };
    }
    if (buf.length - offset - RECORD_HEADER < recordLength) {
      // Decide early on what the header already tells us, so junk is rejected without waiting.
      const partial = Buffer.concat([
        ...fragments,
        buf.subarray(offset + RECORD_HEADER, Math.min(buf.length, offset + RECORD_HEADER + 4)),
      ]);
      const early = checkHandshakeHeader(partial);
      if (early) return early;
      return { state: 'need-more' };
    }
    const fragment = buf.subarray(offset + RECORD_HEADER, offset + RECORD_HEADER + recordLength);
    fragments.push(fragment);
    handshakeBytes += recordLength;
    offset += RECORD_HEADER + recordLength;

    if (needed < 0 && handshakeBytes >= 4) {
      const head = Buffer.concat(fragments).subarray(0, 4);
      const bad = checkHandshakeHeader(head);
      if (bad) return bad;
      needed = 4 + head.readUIntBE(1, 3);
    }
    if (needed >= 0 && handshakeBytes >= needed) break;
  }

  const handshake = Buffer.concat(fragments, handshakeBytes);
  if (handshake.length > needed) {
    // Only a ClientHello may open the connection; anything after it in the same flight is a protocol error.
    return { state: 'malformed', reason: 'data after the ClientHello in its records' };
  }
  const body = handshake.subarray(4, needed);
  const parsed = parseBody(body);
  if ('reason' in parsed) return { state: 'malformed', reason: parsed.reason };
  return { state: 'ok', hello: parsed, length: offset };
}

function checkHandshakeHeader(head: Buffer): ClientHelloResult | null {
  if (head.length >= 1 && head[0] !== HANDSHAKE_CLIENT_HELLO) {
    return { state: 'malformed', reason: `first handshake message is type ${head[0]}, not ClientHello` };
  }
  if (head.length >= 4) {
    const length = head.readUIntBE(1, 3);
    if (length > MAX_CLIENT_HELLO) {
      return { state: 'malformed', reason: `ClientHello of ${length} bytes exceeds ${MAX_CLIENT_HELLO}` };
    }
    if (length < 38) return { state: 'malformed', reason: `ClientHello of ${length} bytes is too short` };
  }
  return null;
}

/** A bounds-checked reader: every read past the end becomes a "truncated" reason, never an exception. */
class Reader {
  pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  /** A vector with a 1- or 2-byte length prefix. */
  vector(lengthBytes: 1 | 2): Reader {
    const n = lengthBytes === 1 ? this.u8() : this.u16();
    return new Reader(this.bytes(n), this.what);
  }
  private need(n: number): void {
    if (this.remaining < n) throw new Truncated(this.what);
  }
}

class Truncated extends Error {}

function parseBody(body: Buffer): ClientHello | { reason: string } {
  try {
    const r = new Reader(body, 'ClientHello');
    const legacyVersion = r.u16();
    r.bytes(32); // random
    const sessionId = r.vector(1);
    if (sessionId.remaining > 32) return { reason: 'legacy_session_id longer than 32 bytes' };
    const suites = r.vector(2);
    if (suites.remaining < 2 || suites.remaining % 2 !== 0) return { reason: 'bad cipher_suites length' };
    const compression = r.vector(1);
    if (compression.remaining < 1) return { reason: 'empty compression_methods' };
    const hello: ClientHello = { alpn: [], legacyVersion, supportedVersions: [] };
    if (r.remaining === 0) return hello; // no extensions (an SSL 3.0 / TLS 1.0 era hello)
    const extensions = r.vector(2);
    if (r.remaining !== 0) return { reason: 'bytes after the extensions' };
    const seen = new Set<number>();
    while (extensions.remaining > 0) {
      const type = extensions.u16();
      const data = extensions.vector(2);
      // RFC 8446 §4.2: "There MUST NOT be more than one extension of the same type in a given extension block."
      if (seen.has(type)) return { reason: `duplicate extension ${type}` };
      seen.add(type);
      if (type === EXT_SERVER_NAME) {
        const sni = parseServerName(data);
        if (typeof sni === 'object') return sni;
        if (sni !== undefined) hello.sni = sni;
      } else if (type === EXT_ALPN) {
        const list = data.vector(2);
        while (list.remaining > 0) {
          const name = list.vector(1);
          if (name.remaining === 0) return { reason: 'empty ALPN protocol name' };
          hello.alpn.push(name.bytes(name.remaining).toString('latin1'));
        }
      } else if (type === EXT_SUPPORTED_VERSIONS) {
        const list = data.vector(1);
        if (list.remaining % 2 !== 0) return { reason: 'odd supported_versions length' };
        while (list.remaining > 0) hello.supportedVersions.push(list.u16());
      }
    }
    return hello;
  } catch (e) {
    if (e instanceof Truncated) return { reason: `${e.message} truncated` };
    throw e;
  }
}

/** RFC 6066 §3: ServerNameList; we take the (only allowed) host_name entry. */
function parseServerName(data: Reader): string | undefined | { reason: string } {
  if (data.remaining === 0) return undefined; // the empty form a server echoes; tolerated from clients
  const list = data.vector(2);
  let name: string | undefined;
  while (list.remaining > 0) {
    const type = list.u8();
    const value = list.vector(2);
    if (type !== 0) continue;
    if (name !== undefined) return { reason: 'two host_name entries in server_name' };
    const raw = value.bytes(value.remaining);
    if (raw.length === 0 || raw.length > 255) return { reason: 'server_name host_name length out of range' };
    // A DNS name in ASCII (IDNs arrive as A-labels); no trailing dot per RFC 6066.
    if (!/^[A-Za-z0-9._-]+$/.test(raw.toString('latin1')))
      return { reason: 'server_name is not an ASCII host name' };
    name = raw.toString('latin1').toLowerCase();
  }
  return name;
}

/** The first bytes of the (client-first) stream: a TLS record, an HTTP/1 request line, or something else. */
export type FirstBytesClass = 'tls' | 'http' | 'unknown' | 'need-more';

/** Longest method token we wait for (registered methods: UPDATEREDIRECTREF is 17). */
const MAX_METHOD = 20;

/**
 * 'http' means an HTTP/1 request line starts here: an upper-case method token (RFC 9110 §9: methods are
 * case-sensitive and all registered ones are upper-case letters, '-' or '_'), one SP, then the start of a
 * request-target (RFC 9112 §3.2: '/', '*', or a scheme/authority letter or digit). Stricter than "any
 * token" on purpose: `SSH-2.0-OpenSSH_9.6 Debian` is a token and a space too.
 */
export function classifyFirstBytes(buf: Buffer): FirstBytesClass {
  if (buf.length === 0) return 'need-more';
  const b0 = buf[0]!;
  if (b0 === CONTENT_HANDSHAKE) {
    if (buf.length < 3) return buf.length === 2 && buf[1] !== 3 ? 'unknown' : 'need-more';
    return buf[1] === 3 && buf[2]! <= 4 ? 'tls' : 'unknown';
  }
  let i = 0;
  while (i < buf.length && i <= MAX_METHOD) {
    const c = buf[i]!;
    if ((c >= 0x41 && c <= 0x5a) || (i > 0 && (c === 0x2d || c === 0x5f))) {
      i++;
      continue;
    }
    if (c === 0x20 && i > 0) {
      if (i + 1 >= buf.length) return 'need-more';
      const t = buf[i + 1]!;
      const targetStart =
        t === 0x2f ||
        t === 0x2a ||
        (t >= 0x41 && t <= 0x5a) ||
        (t >= 0x61 && t <= 0x7a) ||
        (t >= 0x30 && t <= 0x39) ||
        t === 0x5b;
      return targetStart ? 'http' : 'unknown';
    }
    return 'unknown';
  }
  return i > MAX_METHOD ? 'unknown' : 'need-more';
}

/**
 * Reads from `socket` until `want(bytes)` is true, `max` bytes arrived, the peer ended, or `timeoutMs`
 * passed, then puts every byte back (unshift) so the next reader sees the stream unchanged (unless the
 * peer already ended). Returns a copy of what was read (possibly empty). The socket is left paused with no
 * listener of ours.
 */
export function peekFirstBytes(
  socket: Socket,
  opts: { max: number; timeoutMs: number; want: (b: Buffer) => boolean },
): Promise<Buffer> {
  return new Promise((resolve) => {
    let data: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', finish);
      socket.off('close', finish);
      socket.off('error', finish);
      socket.pause();
      // After 'end' a stream refuses unshift; the caller then has the only copy (the returned one).
      if (data.length && !socket.destroyed && !socket.readableEnded) socket.unshift(data);
      resolve(Buffer.from(data));
    };
    const onData = (chunk: Buffer) => {
      data = data.length ? Buffer.concat([data, chunk]) : chunk;
      if (data.length >= opts.max || opts.want(data)) finish();
    };
    const timer = setTimeout(finish, opts.timeoutMs);
    socket.on('data', onData);
    socket.once('end', finish);
    socket.once('close', finish);
    socket.once('error', finish);
    if (socket.readableEnded || socket.destroyed) finish();
    else socket.resume();
  });
}
