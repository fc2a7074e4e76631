/**
 * The digests a session needs for hash signatures (.hdb/.hsb) and the allow list (.fp/.sfp). Both
 * name an object's size, so an object is hashed only with the algorithms some signature of its size
 * uses. When the size is not known up front (a stream without a declared length), every algorithm a
 * signature uses is started, and each is dropped as soon as the object outgrows the largest size
 * its signatures name: a 100 MB download is not MD5-hashed for the built-in 68-byte EICAR entry.
 */
import { createHash, type Hash } from 'node:crypto';
import type { HashAlgo } from '../signatures/index.js';
import type { CompiledDb } from './compile.js';

const ALGOS: HashAlgo[] = ['md5', 'sha1', 'sha256'];

export class ObjectHashes {
  private readonly hashers: Partial<Record<HashAlgo, Hash>> = {};
  /** Bytes past which a hasher is dropped (Infinity when the size is known: it was chosen for it). */
  private readonly limits: Record<HashAlgo, number> = { md5: 0, sha1: 0, sha256: 0 };
  /** Some allow-list entry may apply, so a body match must not stop the scan early. */
  readonly mayAllow: boolean;

  constructor(db: CompiledDb, size: number | undefined) {
    let allow = false;
    for (const a of ALGOS) {
      let needAllow: boolean;
      let need: boolean;
      if (size === undefined) {
        const limit = Math.max(db.allow.maxSize(a), db.hashes.maxSize(a));
        needAllow = db.allow.maxSize(a) >= 0;
        need = limit >= 0;
        this.limits[a] = limit;
      } else {
        needAllow = db.allow.wants(a, size);
        need = needAllow || db.hashes.wants(a, size);
        this.limits[a] = Number.POSITIVE_INFINITY;
      }
      allow ||= needAllow;
      if (need) this.hashers[a] = createHash(a);
    }
    this.mayAllow = allow;
  }

  /** `pos`: bytes before this chunk. */
  update(chunk: Buffer, pos: number): void {
    for (const a of ALGOS) {
      const h = this.hashers[a];
      if (!h) continue;
      if (pos + chunk.length > this.limits[a]) this.hashers[a] = undefined;
      else h.update(chunk);
    }
  }

  /** Hex digests of the algorithms still running. */
  digests(): Partial<Record<HashAlgo, string>> {
    const out: Partial<Record<HashAlgo, string>> = {};
    for (const a of ALGOS) {
      const h = this.hashers[a];
      if (h) out[a] = h.digest('hex');
    }
    return out;
  }
}
