/**
 * PROXY protocol version 2 (HAProxy, "The PROXY protocol", section 2.2), sans-IO: the binary header a
 * stream-mode connection sends to the backend before any client byte, carrying the client's address
 * and its verified certificate identity.
 *
 * TLVs written (section 2.2.5 and following):
 * - PP2_TYPE_SSL (0x20): client = SSL|CERT_CONN (|CERT_SESS on a resumed session), verify = 0 (the
 *   gateway only forwards verified clients), with sub-TLVs PP2_SUBTYPE_SSL_VERSION (0x21, e.g.
 *   "TLSv1.3"), PP2_SUBTYPE_SSL_CN (0x22) and PP2_SUBTYPE_SSL_CIPHER (0x23);
 * - PP2_TYPE_AUTHORITY (0x02): the SNI the client sent, if any;
 * - custom TLVs in the range the spec reserves for applications (0xE0–0xEF):
 *     0xE0 subject: UTF-8, one `attr=value` per line, certificate order;
 *     0xE1 DNS SAN: UTF-8, one TLV per name;
 *     0xE2 URI SAN: UTF-8, one TLV per URI (e.g. spiffe://trust.domain/workload);
 *     0xE3 certificate SHA-256: 32 raw bytes.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { ProtocolError } from '../../errors.js';

export const PP2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
export const PP2_TYPE_ALPN = 0x01;
export const PP2_TYPE_AUTHORITY = 0x02;
export const PP2_TYPE_SSL = 0x20;
export const PP2_SUBTYPE_SSL_VERSION = 0x21;
export const PP2_SUBTYPE_SSL_CN = 0x22;
export const PP2_SUBTYPE_SSL_CIPHER = 0x23;
export const PP2_CLIENT_SSL = 0x01;
export const PP2_CLIENT_CERT_CONN = 0x02;
export const PP2_CLIENT_CERT_SESS = 0x04;
export const PP2_TYPE_SCANGATE_SUBJECT = 0xe0;
export const PP2_TYPE_SCANGATE_DNS = 0xe1;
export const PP2_TYPE_SCANGATE_URI = 0xe2;
export const PP2_TYPE_SCANGATE_SHA256 = 0xe3;

export interface Pp2Address {
  address: string;
  port: number;
}

export interface Tlv {
  type: number;
  value: Buffer;
}

export interface Pp2Header {
  command: 'LOCAL' | 'PROXY';
  family: 'UNSPEC' | 'TCP4' | 'TCP6';
  source?: Pp2Address;
  destination?: Pp2Address;
  tlvs: Tlv[];
}

export function tlv(type: number, value: Buffer | string): Tlv {
  return { type, value: typeof value === 'string' ? Buffer.from(value, 'utf8') : value };
}

function encodeTlvs(tlvs: Tlv[]): Buffer {
  const parts: Buffer[] = [];
  for (const t of tlvs) {
    if (t.value.length > 0xffff) throw new RangeError(`TLV 0x${t.type.toString(16)} longer than 65535 bytes`);
    const h = Buffer.allocUnsafe(3);
    h[0] = t.type;
    h.writeUInt16BE(t.value.length, 1);
    parts.push(h, t.value);
  }
  return Buffer.concat(parts);
}

/** The value of a PP2_TYPE_SSL TLV. */
export function sslTlv(o: { client: number; verify: number; sub: Tlv[] }): Tlv {
  const head = Buffer.allocUnsafe(5);
  head[0] = o.client;
  head.writeUInt32BE(o.verify >>> 0, 1);
  return { type: PP2_TYPE_SSL, value: Buffer.concat([head, encodeTlvs(o.sub)]) };
}

function v4Bytes(a: string): Buffer {
  return Buffer.from(a.split('.').map(Number));
}

function v6Bytes(a: string): Buffer {
  let s = a;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const b = v4Bytes(v4[1]!);
    s = `${s.slice(0, -v4[1]!.length)}${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  for (let i = 0; i < 8; i++) out.writeUInt16BE(Number.parseInt(groups[i] || '0', 16), i * 2);
  return out;
}

function unmapV4(a: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return m ? m[1]! : a;
}

/** Builds a PROXY v2 header (command PROXY, stream transport). */
export function encodeProxyV2(
  source: Pp2Address | null,
  destination: Pp2Address | null,
  tlvs: Tlv[] = [],
): Buffer {
  let famByte = 0x00;
  let addr = Buffer.alloc(0);
  const src = source ? unmapV4(source.address) : '';
  const dst = destination ? unmapV4(destination.address) : '';
  if (source && destination && isIPv4(src) && isIPv4(dst)) {
    famByte = 0x11;
    addr = Buffer.allocUnsafe(12);
    v4Bytes(src).copy(addr, 0);
    v4Bytes(dst).copy(addr, 4);
    addr.writeUInt16BE(source.port, 8);
    addr.writeUInt16BE(destination.port, 10);
  } else if (source && destination && (isIPv6(src) || isIPv4(src)) && (isIPv6(dst) || isIPv4(dst))) {
    famByte = 0x21;
    addr = Buffer.allocUnsafe(36);
    v6Bytes(isIPv4(src) ? `::ffff:${src}` : src).copy(addr, 0);
    v6Bytes(isIPv4(dst) ? `::ffff:${dst}` : dst).copy(addr, 16);
    addr.writeUInt16BE(source.port, 32);
    addr.writeUInt16BE(destination.port, 34);
  }
  const body = Buffer.concat([addr, encodeTlvs(tlvs)]);
  if (body.length > 0xffff) throw new RangeError('PROXY v2 header longer than 65535 bytes');
  const head = Buffer.allocUnsafe(16);
  PP2_SIGNATURE.copy(head, 0);
  head[12] = 0x21; // version 2, command PROXY
  head[13] = famByte;
  head.writeUInt16BE(body.length, 14);
  return Buffer.concat([head, body]);
}

function parseTlvs(b: Buffer): Tlv[] {
  const out: Tlv[] = [];
  let i = 0;
  while (i < b.length) {
    if (b.length - i < 3) throw new ProtocolError('ERR_PROXY_V2', 'truncated TLV');
    const len = b.readUInt16BE(i + 1);
    if (b.length - i - 3 < len) throw new ProtocolError('ERR_PROXY_V2', 'TLV runs past the header');
    out.push({ type: b[i]!, value: b.subarray(i + 3, i + 3 + len) });
    i += 3 + len;
  }
  return out;
}

function v6Text(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}

/**
 * Parses a PROXY v2 header at the start of `buf`. Returns null when more bytes are needed, else the
 * header and how many bytes it took. Throws ProtocolError on anything that is not a v2 header.
 */
export function decodeProxyV2(buf: Buffer): { header: Pp2Header; length: number } | null {
  const sig = Math.min(buf.length, 12);
  if (!buf.subarray(0, sig).equals(PP2_SIGNATURE.subarray(0, sig)))
    throw new ProtocolError('ERR_PROXY_V2', 'not a PROXY v2 signature');
  if (buf.length < 16) return null;
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) throw new ProtocolError('ERR_PROXY_V2', `version ${verCmd >> 4}`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) throw new ProtocolError('ERR_PROXY_V2', `command ${cmd}`);
  const fam = buf[13]!;
  const len = buf.readUInt16BE(14);
  if (buf.length < 16 + len) return null;
  const body = buf.subarray(16, 16 + len);
  const header: Pp2Header = { command: cmd === 1 ? 'PROXY' : 'LOCAL', family: 'UNSPEC', tlvs: [] };
  let rest = body;
  if (fam === 0x11) {
    if (body.length < 12) throw new ProtocolError('ERR_PROXY_V2', 'short TCP4 address block');
    header.family = 'TCP4';
    header.source = { address: [...body.subarray(0, 4)].join('.'), port: body.readUInt16BE(8) };
    header.destination = { address: [...body.subarray(4, 8)].join('.'), port: body.readUInt16BE(10) };
    rest = body.subarray(12);
  } else if (fam === 0x21) {
    if (body.length < 36) throw new ProtocolError('ERR_PROXY_V2', 'short TCP6 address block');
    header.family = 'TCP6';
    header.source = { address: v6Text(body.subarray(0, 16)), port: body.readUInt16BE(32) };
    header.destination = { address: v6Text(body.subarray(16, 32)), port: body.readUInt16BE(34) };
    rest = body.subarray(36);
  } else if (fam !== 0x00)
    throw new ProtocolError('ERR_PROXY_V2', `unsupported family 0x${fam.toString(16)}`);
  header.tlvs = parseTlvs(rest);
  return { header, length: 16 + len };
}

/** The sub-TLVs of a PP2_TYPE_SSL value, with its client flags and verify result. */
export function decodeSslTlv(value: Buffer): { client: number; verify: number; sub: Tlv[] } {
  if (value.length < 5) throw new ProtocolError('ERR_PROXY_V2', 'short PP2_TYPE_SSL');
  return { client: value[0]!, verify: value.readUInt32BE(1), sub: parseTlvs(value.subarray(5)) };
}
