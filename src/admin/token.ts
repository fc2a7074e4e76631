/**
 * The admin token: from `admin.token`, else generated once (256 random bits) into dataDir/admin.token
 * with mode 0600 and printed on that first start only. Compared in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface AdminToken {
  value: string;
  /** Where it is stored (null when it came from the configuration). */
  file: string | null;
  /** True on the start that created it: the banner prints it once. */
  created: boolean;
}

export async function loadOrCreateToken(dataDir: string, configured: string | null): Promise<AdminToken> {
  if (configured) return { value: configured, file: null, created: false };
  const file = join(dataDir, 'admin.token');
  try {
    const value = (await readFile(file, 'utf8')).trim();
    if (value.length >= 16) {
      await chmod(file, 0o600);
      return { value, file, created: false };
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const value = randomBytes(32).toString('base64url');
  try {
    // 'wx': two workers starting together never overwrite each other's token.
    await writeFile(file, `${value}\n`, { mode: 0o600, flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateToken(dataDir, null);
    throw e;
  }
  return { value, file, created: true };
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time equality (hashing first makes the lengths equal). */
export function tokenMatches(expected: string, given: string | undefined | null): boolean {
  if (!given) return false;
  return timingSafeEqual(digest(expected), digest(given));
}

/** The token a request presents: `Authorization: Bearer …` or the dashboard's cookie. */
export function presentedToken(headers: { authorization?: string; cookie?: string }): string | null {
  const auth = headers.authorization;
  if (auth) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return m ? m[1]! : null;
  }
  const cookie = headers.cookie;
  if (cookie) {
    for (const part of cookie.split(';')) {
      const [k, ...v] = part.trim().split('=');
      if (k !== COOKIE) continue;
      try {
        return decodeURIComponent(v.join('='));
      } catch {
        return null; // a malformed %-escape is no token, not a server error
      }
    }
  }
  return null;
}

export const COOKIE = 'scangate_admin';
