/** The multi-pattern matcher: compile a SignatureDb once, then one MatchSession per object. */
import type { SignatureDb, UnsupportedEntry } from '../signatures/index.js';
import { type CompiledDb, compileDb } from './compile.js';
import { BodyMatchSession, type MatchSession } from './session.js';

export { targetMatches } from './filetype.js';
export type { MatchSession } from './session.js';

export interface Matcher {
  readonly signatureCount: number;
  readonly dbVersion: string;
  /** Signatures the matcher itself could not use (no anchorable bytes); also appended to db.unsupported. */
  readonly unanchored: UnsupportedEntry[];
  /** Sessions may start without the object's size (no signature is placed relative to the end). */
  readonly sizeFree: boolean;
  /** `size` may be left out only when `sizeFree`. */
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
