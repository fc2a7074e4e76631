/** Shared helpers for the archive unpacker tests: drain an unpacker, run real tools in a temp folder. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BufferSource, type ObjectSource } from '../../src/engine/source.js';
import type { UnpackContext, Unpacker } from '../../src/engine/unpack/types.js';

export const TESTFILES = '/usr/share/clamav-testfiles';

export function ctx(over: Partial<UnpackContext> = {}): UnpackContext {
  return {
    maxFileSize: 100 * 1024 * 1024,
    maxFiles: 10000,
    maxCompressionRatio: 1000,
    signal: new AbortController().signal,
    ...over,
  };
}

export interface Drained {
  name: string;
  size?: number;
  encrypted?: boolean;
  data: Buffer;
}

/** Reads every entry fully (encrypted ones are listed with empty data). */
export async function drain(
  u: Unpacker,
  src: ObjectSource | Buffer,
  c: UnpackContext = ctx(),
): Promise<Drained[]> {
  const source = Buffer.isBuffer(src) ? new BufferSource(src) : src;
  const out: Drained[] = [];
  for await (const e of u.entries(source, c)) {
    const parts: Buffer[] = [];
    if (!e.encrypted) for await (const chunk of e.open()) parts.push(chunk);
    out.push({ name: e.name, size: e.size, encrypted: e.encrypted, data: Buffer.concat(parts) });
  }
  return out;
}

/** Runs `fn(dir)` in a fresh temp folder, removed afterwards (after the promise settles when fn is async). */
export function inTemp<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'scangate-arch-'));
  const clean = (): void => rmSync(dir, { recursive: true, force: true });
  let result: T;
  try {
    result = fn(dir);
  } catch (e) {
    clean();
    throw e;
  }
  if (result instanceof Promise) return result.finally(clean) as T;
  clean();
  return result;
}

export function sh(dir: string, cmd: string, args: string[], input?: Buffer): Buffer {
  return execFileSync(cmd, args, {
    cwd: dir,
    input,
    maxBuffer: 64 * 1024 * 1024,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

export function read(dir: string, name: string): Buffer {
  return readFileSync(join(dir, name));
}
