/** The multi-pattern matcher: compile a SignatureDb once, then one MatchSession per object. */
import type { SignatureDb, UnsupportedEntry } from '../signatures/index.js';
import { type CompiledDb, compileDb } from './compile.js';
import { BodyMatchSession } from './session.js';

export { targetMatches } from './filetype.js';

/** One object's matching: its bytes in order, then the names (session.ts says how). */
export interface MatchSession {
  write(chunk: Buffer): void;
  /**
   * A signature matched that nothing later can undo (no allow-list entry could clear the object, no
   * file type left to check, one match wanted): the verdict is infected whatever bytes follow.
   */
  readonly decided: string | null;
  /**
   * The stream is over. Null, or (a session started without the size, on a database with EOF-n
   * signatures, not decided) the offset from which the bytes must be given again with writeTail,
   * to the last, before end().
   */
  tailFrom(): number | null;
  writeTail(chunk: Buffer): void;
  /** Matched signature names, the first is the primary; [] means clean. */
  end(): string[];
}

export interface Matcher {
  readonly signatureCount: number;
  readonly dbVersion: string;
  /** Signatures the matcher itself could not use (no anchorable bytes); also appended to db.unsupported. */
  readonly unanchored: UnsupportedEntry[];
  /** No signature is placed relative to the end: a session without the size needs no tail pass. */
  readonly sizeFree: boolean;
  /** Without `size`, a database with EOF-n signatures makes the session ask for a tail pass (tailFrom). */
  session(opts: { size?: number; allMatches?: boolean }): MatchSession;
}

class CompiledMatcher implements Matcher {
  readonly signatureCount: number;
  readonly dbVersion: string;
  readonly unanchored: UnsupportedEntry[];
  constructor(
    private readonly c: CompiledDb,
    db: SignatureDb,
  ) {
    this.signatureCount = c.hashes.count + c.bodies.length + c.logicals.length;
    this.dbVersion = db.version;
    this.unanchored = c.unanchored.map((u) => ({
      file: '(matcher)',
      line: 0,
      reason: `${u.name}: ${u.reason}`,
    }));
  }
  get sizeFree(): boolean {
    return this.c.sizeFree;
  }
  session(opts: { size?: number; allMatches?: boolean }): MatchSession {
    return new BodyMatchSession(this.c, opts);
  }
}

export function compileMatcher(db: SignatureDb): Matcher {
  const c = compileDb(db);
  const m = new CompiledMatcher(c, db);
  // Report rather than silently drop: callers log db.unsupported.
  if (m.unanchored.length) db.unsupported.push(...m.unanchored);
  return m;
}
