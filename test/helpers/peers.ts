/**
 * Interop tests need real Debian programs. A missing one is a skip with the reason, except under
 * CI=true where a skip would hide an untested capability, so it is a failure instead (DESIGN 6).
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import type { TestContext } from 'node:test';

const SEARCH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export function which(program: string): string | null {
  for (const dir of SEARCH) {
    const full = `${dir}/${program}`;
    try {
      accessSync(full, constants.X_OK);
      return full;
    } catch {}
  }
  return null;
}

/**
 * Returns the program's path, or marks the test skipped (throws under CI) and returns null.
 * Usage: `const clamscan = peer(t, 'clamscan'); if (!clamscan) return;`
 */
export function peer(t: TestContext, program: string, debianPackage = program): string | null {
  const found = which(program);
  if (found) return found;
  const reason = `peer "${program}" not installed (Debian package ${debianPackage}; run npm run peers)`;
  if (process.env.CI === 'true') throw new Error(`${reason}: under CI a missing peer is a failure`);
  t.skip(reason);
  return null;
}

/** Same rule for a capability that is not a program (root, network namespaces, a file). */
export function requireCapability(t: TestContext, ok: boolean, reason: string): boolean {
  if (ok) return true;
  if (process.env.CI === 'true') throw new Error(`${reason}: under CI a missing capability is a failure`);
  t.skip(reason);
  return false;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export function run(program: string, args: string[], input?: Buffer | string): string {
  return execFileSync(program, args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}
