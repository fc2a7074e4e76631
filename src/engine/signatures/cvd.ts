/**
 * CVD / CLD / CUD containers (Signatures.md "CVD file", libclamav cvd.c): a 512-byte ASCII header
 * `ClamAV-VDB:buildtime:version:sigs:flevel:md5:dsig:builder:stime` padded with spaces, then a
 * gzip-compressed tar (.cvd, .cud) or a plain tar (.cld) of database files.
 *
 * We verify the header's MD5 of the body for .cvd/.cud. The RSA "digital signature" field is NOT
 * verified: it needs Talos' key material, so databases we generate could never pass it; integrity
 * against corruption comes from the MD5, authenticity must come from how the file was obtained.
 * A .cld's header is copied from the .cvd it was built from (its MD5 is of the compressed body that no
 * longer exists), so ClamAV does not check it and neither do we.
 */
import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { SignatureError } from '../../errors.js';

export const CVD_HEADER_SIZE = 512;

export interface CvdHeader {
  buildTime: string;
  version: number;
  signatures: number;
  flevel: number;
  md5: string;
  dsig: string;
  builder: string;
  stime: number;
}

export interface DbFile {
  name: string;
  data: Buffer;
}

export function parseCvdHeader(file: string, buf: Buffer): CvdHeader {
  if (buf.length < CVD_HEADER_SIZE)
    throw new SignatureError(file, 0, `shorter than the ${CVD_HEADER_SIZE}-byte CVD header`);
  const text = buf
    .subarray(0, CVD_HEADER_SIZE)
    .toString('latin1')
    .replace(/[ \0]+$/, '');
  const f = text.split(':');
  if (f[0] !== 'ClamAV-VDB' || f.length < 9) throw new SignatureError(file, 0, 'not a ClamAV-VDB header');
  const num = (s: string | undefined, what: string) => {
    if (!s || !/^[0-9]+$/.test(s.trim())) throw new SignatureError(file, 0, `CVD header: bad ${what} "${s}"`);
    return Number(s.trim());
  };
  return {
    buildTime: f[1]!,
    version: num(f[2], 'version'),
    signatures: num(f[3], 'signature count'),
    flevel: num(f[4], 'functionality level'),
    md5: f[5]!,
    dsig: f[6]!,
    builder: f[7]!,
    stime: num(f[8], 'build time'),
  };
}

function octal(field: Buffer): number {
  const s = field
    .toString('latin1')
    .replace(/[\0 ]+$/g, '')
    .trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return Number.NaN;
  return Number.parseInt(s, 8);
}

/** Minimal ustar reader: regular files only, names without "/" (cvd.c rejects both otherwise). */
export function readTar(file: string, tar: Buffer): DbFile[] {
  const out: DbFile[] = [];
  let off = 0;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const nameEnd = h.indexOf(0);
    const name = h.subarray(0, nameEnd < 0 || nameEnd > 100 ? 100 : nameEnd).toString('latin1');
    const size = octal(h.subarray(124, 136));
    const type = h[156];
    if (!Number.isFinite(size) || off + 512 + size > tar.length)
      throw new SignatureError(file, 0, `truncated tar entry "${name}"`);
    if (type === 0x30 || type === 0) {
      if (name.includes('/')) throw new SignatureError(file, 0, `tar entry "${name}" has a directory part`);
      out.push({ name, data: tar.subarray(off + 512, off + 512 + size) });
    } else if (type !== 0x35 && type !== 0x78 && type !== 0x67) {
      throw new SignatureError(file, 0, `tar entry "${name}" is not a regular file`);
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

/** Unpacks a .cvd/.cld/.cud; `kind` comes from the file extension. */
export function unpackCvd(
  file: string,
  buf: Buffer,
  kind: 'cvd' | 'cld' | 'cud',
): { header: CvdHeader; files: DbFile[] } {
  const header = parseCvdHeader(file, buf);
  const body = buf.subarray(CVD_HEADER_SIZE);
  const compressed = body.length >= 2 && body[0] === 0x1f && body[1] === 0x8b;
  if (kind === 'cvd' || (kind === 'cud' && /^[0-9a-f]{32}$/i.test(header.md5))) {
    const md5 = createHash('md5').update(body).digest('hex');
    if (md5 !== header.md5.toLowerCase())
      throw new SignatureError(file, 0, `MD5 of the body is ${md5}, header says ${header.md5}`);
  }
  let tar: Buffer;
  try {
    tar = compressed ? gunzipSync(body) : body;
  } catch (e) {
    throw new SignatureError(file, 0, `body does not decompress: ${(e as Error).message}`);
  }
  const files = readTar(file, tar);
  verifyInfo(file, files);
  return { header, files };
}

/**
 * `.info` members (DatabaseInfo.md) list `name:size:sha256` for every other member; like cli_tgzload
 * we refuse a container whose members do not match ("Invalid checksum"). Other lines (the header copy,
 * `DSIG:`) are skipped.
 */
function verifyInfo(file: string, files: DbFile[]): void {
  const byName = new Map(files.map((f) => [f.name, f.data]));
  for (const info of files.filter((f) => f.name.endsWith('.info'))) {
    for (const line of info.data.toString('latin1').split('\n')) {
      const m = /^([^:/]+):([0-9]+):([0-9a-fA-F]{64})\s*$/.exec(line);
      if (!m) continue;
      const [, name, size, sha] = m as unknown as [string, string, string, string];
      const data = byName.get(name);
      if (!data)
        throw new SignatureError(`${file}/${info.name}`, 0, `lists "${name}", which the container lacks`);
      if (
        data.length !== Number(size) ||
        createHash('sha256').update(data).digest('hex') !== sha.toLowerCase()
      ) {
        throw new SignatureError(`${file}/${name}`, 0, `size or SHA-256 differs from ${info.name}`);
      }
    }
  }
}

function tarHeader(name: string, size: number, mtime: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'latin1');
  h.write('0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  h.write(`${mtime.toString(8).padStart(11, '0')}\0`, 136, 'latin1');
  h.write('        ', 148, 'latin1');
  h[156] = 0x30;
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

export function buildTar(files: DbFile[], mtime = 0): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    parts.push(tarHeader(f.name, f.data.length, mtime), f.data);
    const pad = (512 - (f.data.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

function clamTime(d: Date): string {
  const mon = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][
    d.getUTCMonth()
  ];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())} ${mon} ${d.getUTCFullYear()} ${p(d.getUTCHours())}-${p(d.getUTCMinutes())} +0000`;
}

export interface BuildCvdOptions {
  /** 'cvd' (gzip'd tar, default) or 'cld' (plain tar). */
  kind?: 'cvd' | 'cld';
  buildTime?: Date;
  flevel?: number;
  builder?: string;
  /** Signature count written in the header; default: non-empty, non-comment lines of signature files. */
  signatures?: number;
}

/** Builds a CVD/CLD with the real header format and a real tar(+gzip) body (for tests and tooling). */
export function buildCvd(files: DbFile[], version: number, opts: BuildCvdOptions = {}): Buffer {
  const when = opts.buildTime ?? new Date(0);
  const stime = Math.floor(when.getTime() / 1000);
  const tar = buildTar(files, stime);
  const body = opts.kind === 'cld' ? tar : gzipSync(tar);
  const sigs =
    opts.signatures ??
    files
      .filter((f) => /\.(hdb|hsb|ndb|ldb|mdb|msb|cdb|idb)$/i.test(f.name))
      .reduce(
        (n, f) =>
          n +
          f.data
            .toString('latin1')
            .split('\n')
            .filter((l) => l.trim() && !l.startsWith('#')).length,
        0,
      );
  const md5 = createHash('md5').update(body).digest('hex');
  const text = [
    'ClamAV-VDB',
    clamTime(when),
    version,
    sigs,
    opts.flevel ?? 90,
    md5,
    'X'.repeat(64),
    opts.builder ?? 'scangate',
    stime,
  ].join(':');
  if (text.length > CVD_HEADER_SIZE) throw new Error('CVD header too long');
  const header = Buffer.alloc(CVD_HEADER_SIZE, 0x20);
  header.write(text, 0, 'latin1');
  return Buffer.concat([header, body]);
}
