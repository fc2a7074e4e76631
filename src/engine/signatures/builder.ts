/**
 * Sans-IO assembly of a SignatureDb: feed it (file name, bytes) pairs, get a SignatureDb. The file
 * extension picks the format; CVD/CLD/CUD containers are unpacked and their members fed back in.
 * Malformed lines throw SignatureError(file, line); unsupported ones are counted with the reason.
 */
import { createHash } from 'node:crypto';
import { SignatureError } from '../../errors.js';
import { unpackCvd } from './cvd.js';
import { parseHashLine } from './hash.js';
import { HexSigError, UnsupportedSignature } from './hexsig.js';
import { parseIgnLine } from './ign.js';
import { parseLdbLine } from './ldb.js';
import { parseNdbLine } from './ndb.js';
import type {
  BodySig,
  HashSig,
  LogicalSig,
  SignatureCounts,
  SignatureDb,
  UnsupportedEntry,
} from './types.js';

/** Extensions we read (lowercase, without dot). */
export const KNOWN_EXTENSIONS = [
  'cvd',
  'cld',
  'cud',
  'hdb',
  'hsb',
  'ndb',
  'ldb',
  'fp',
  'sfp',
  'ign2',
  'ign',
] as const;
/** Database kinds ClamAV has that we do not implement: the whole file is reported unsupported. */
export const UNSUPPORTED_EXTENSIONS: Record<string, string> = {
  cbc: 'bytecode signatures',
  mdb: 'PE section hashes',
  msb: 'PE section hashes',
  imp: 'PE import-table hashes',
  cdb: 'container metadata signatures',
  idb: 'icon signatures',
  pdb: 'phishing domain lists',
  gdb: 'phishing domain lists',
  wdb: 'phishing allow lists',
  ftm: 'file-type magic',
  crb: 'Authenticode trust rules',
  yar: 'YARA rules',
  yara: 'YARA rules',
  cfg: 'engine configuration',
  hdu: 'PUA databases (not enabled)',
  hsu: 'PUA databases (not enabled)',
  ndu: 'PUA databases (not enabled)',
  ldu: 'PUA databases (not enabled)',
  mdu: 'PUA databases (not enabled)',
  msu: 'PUA databases (not enabled)',
};
/** Files inside a CVD that carry no signatures. */
const IGNORED_MEMBERS = new Set(['info', 'cvd', 'txt']);

export function extensionOf(name: string): string {
  const base = name.slice(name.lastIndexOf('/') + 1);
  if (base === 'COPYING') return 'txt';
  const dot = base.lastIndexOf('.');
  return dot < 0 ? '' : base.slice(dot + 1).toLowerCase();
}

export class SignatureDbBuilder {
  private readonly hashes: HashSig[] = [];
  private readonly bodies: BodySig[] = [];
  private readonly logicals: LogicalSig[] = [];
  private readonly allow: HashSig[] = [];
  private readonly ignored = new Set<string>();
  private readonly unsupported: UnsupportedEntry[] = [];
  private readonly content = createHash('sha256');
  private cvdVersion: number | undefined;
  private cvdBuildTime: string | undefined;
  private digest: string | undefined;

  /** Adds one database file. Throws SignatureError for malformed content. */
  addFile(file: string, data: Buffer): void {
    if (this.digest) throw new Error('SignatureDbBuilder: addFile after build');
    const ext = extensionOf(file);
    this.content.update(`${file.slice(file.lastIndexOf('/') + 1)}\0${data.length}\0`).update(data);
    if (ext === 'cvd' || ext === 'cld' || ext === 'cud') {
      const { header, files } = unpackCvd(file, data, ext);
      if (this.cvdVersion === undefined || header.version > this.cvdVersion) {
        this.cvdVersion = header.version;
        this.cvdBuildTime = header.buildTime;
      }
      for (const m of files) {
        const mext = extensionOf(m.name);
        if (IGNORED_MEMBERS.has(mext)) continue;
        this.addFile(`${file}/${m.name}`, m.data);
      }
      return;
    }
    if (ext in UNSUPPORTED_EXTENSIONS) {
      this.unsupported.push({ file, line: 0, reason: `${UNSUPPORTED_EXTENSIONS[ext]} (.${ext})` });
      return;
    }
    const parse = this.lineParser(ext);
    if (!parse) {
      this.unsupported.push({ file, line: 0, reason: `unknown database extension ".${ext}"` });
      return;
    }
    const text = data.toString('latin1');
    let lineNo = 0;
    let start = 0;
    while (start <= text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      lineNo++;
      let line = text.slice(start, end);
      start = end + 1;
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line.length === 0 || line.startsWith('#')) {
        if (end === text.length) break;
        continue;
      }
      try {
        parse(line);
      } catch (e) {
        if (e instanceof UnsupportedSignature)
          this.unsupported.push({ file, line: lineNo, reason: e.message });
        else if (e instanceof HexSigError) throw new SignatureError(file, lineNo, e.message);
        else if (e instanceof SignatureError) throw e;
        else throw new SignatureError(file, lineNo, `cannot parse: ${(e as Error).message}`, { cause: e });
      }
      if (end === text.length) break;
    }
  }

  private lineParser(ext: string): ((line: string) => void) | null {
    switch (ext) {
      case 'hdb':
        return (l) => void this.hashes.push(parseHashLine(l, true));
      case 'hsb':
        return (l) => void this.hashes.push(parseHashLine(l, false));
      case 'fp':
        return (l) => void this.allow.push(parseHashLine(l, true));
      case 'sfp':
        return (l) => void this.allow.push(parseHashLine(l, false));
      case 'ndb':
        return (l) => void this.bodies.push(parseNdbLine(l));
      case 'ldb':
        return (l) => void this.logicals.push(parseLdbLine(l));
      case 'ign':
      case 'ign2':
        return (l) => void this.ignored.add(parseIgnLine(l));
      default:
        return null;
    }
  }

  /** Adds already-parsed signatures (the built-in set). */
  addParsed(sigs: { hashes?: HashSig[]; bodies?: BodySig[] }): void {
    this.content.update(`builtin\0${JSON.stringify(sigs)}\0`);
    this.hashes.push(...(sigs.hashes ?? []));
    this.bodies.push(...(sigs.bodies ?? []));
  }

  build(): SignatureDb {
    const keep = <T extends { name: string }>(a: T[]) =>
      this.ignored.size ? a.filter((s) => !this.ignored.has(s.name)) : a;
    const hashes = keep(this.hashes);
    const bodies = keep(this.bodies);
    const logicals = keep(this.logicals);
    const counts: SignatureCounts = {
      hdb: hashes.filter((h) => h.algo === 'md5').length,
      hsb: hashes.filter((h) => h.algo !== 'md5').length,
      ndb: bodies.length,
      ldb: logicals.length,
      fp: this.allow.length,
      ign: this.ignored.size,
    };
    this.digest ??= this.content.digest('hex');
    const digest = this.digest;
    return {
      counts,
      total: hashes.length + bodies.length + logicals.length,
      unsupported: this.unsupported,
      version: this.cvdVersion !== undefined ? String(this.cvdVersion) : `local-${digest.slice(0, 12)}`,
      digest,
      ...(this.cvdVersion !== undefined
        ? { versionNumber: this.cvdVersion, buildTime: this.cvdBuildTime }
        : {}),
      hashes,
      bodies,
      logicals,
      allow: this.allow,
    };
  }
}
