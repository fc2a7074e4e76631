/**
 * The quarantine folder: an infected file is moved in as `<id>.bin` (mode 0600, so it can be neither
 * run nor read by others) next to `<id>.json` (0600) saying where it came from, its SHA-256, the
 * signature and when. `restore` moves it back with its original mode; it never overwrites a file
 * that has appeared at the original path since, unless forced. The folder itself is 0700.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  chmod,
  copyFile,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ScangateError } from '../errors.js';

export interface QuarantineRecord {
  id: string;
  originalPath: string;
  sha256: string;
  signature: string;
  /** ISO-8601 time it was quarantined. */
  time: string;
  size: number;
  /** Permission bits the file had, restored on restore. */
  mode: number;
}

const ID = /^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$/;

export class Quarantine {
  constructor(readonly dir: string) {}

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
  }

  /** Moves `path` into quarantine; returns the record. Throws if the file is gone. */
  async add(path: string, signature: string): Promise<QuarantineRecord> {
    const st = await stat(path);
    const now = new Date();
    const id = `${now
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z')}-${randomBytes(6).toString('hex')}`;
    const target = this.binPath(id);
    await moveFile(path, target);
    await chmod(target, 0o600);
    const record: QuarantineRecord = {
      id,
      originalPath: path,
      sha256: await sha256File(target),
      signature,
      time: now.toISOString(),
      size: st.size,
      mode: st.mode & 0o7777,
    };
    await writeFile(this.recordPath(id), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
    return record;
  }

  async list(): Promise<QuarantineRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const out: QuarantineRecord[] = [];
    for (const n of names.filter((x) => x.endsWith('.json') && ID.test(x.slice(0, -5))).sort()) {
      try {
        out.push(JSON.parse(await readFile(join(this.dir, n), 'utf8')) as QuarantineRecord);
      } catch {}
    }
    return out;
  }

  /** Puts the file back at its original path (or `to`); returns where it went. */
  async restore(id: string, opts: { to?: string; force?: boolean } = {}): Promise<string> {
    if (!ID.test(id)) throw new ScangateError('ERR_QUARANTINE_ID', `not a quarantine id: "${id}"`);
    let record: QuarantineRecord;
    try {
      record = JSON.parse(await readFile(this.recordPath(id), 'utf8')) as QuarantineRecord;
    } catch {
      throw new ScangateError('ERR_QUARANTINE_ID', `no quarantined file with id ${id} in ${this.dir}`);
    }
    const dest = opts.to ?? record.originalPath;
    if (!opts.force) {
      const exists = await stat(dest).then(
        () => true,
        () => false,
      );
      if (exists)
        throw new ScangateError(
          'ERR_QUARANTINE_EXISTS',
          `${dest} exists; use --force to overwrite or --to PATH`,
        );
    }
    await mkdir(dirname(dest), { recursive: true });
    // Restoring says "this content is fine here": a running agent leaves it alone from now on.
    await this.allow(record.sha256, dest);
    await moveFile(this.binPath(id), dest);
    await chmod(dest, record.mode & 0o777);
    await rm(this.recordPath(id), { force: true });
    return dest;
  }

  /** Contents an operator restored (allowed.json: SHA-256 → where and when); never quarantined again. */
  async allowed(): Promise<Map<string, { path: string; time: string }>> {
    try {
      const list = JSON.parse(await readFile(join(this.dir, 'allowed.json'), 'utf8')) as {
        sha256: string;
        path: string;
        time: string;
      }[];
      return new Map(list.map((a) => [a.sha256, { path: a.path, time: a.time }]));
    } catch {
      return new Map();
    }
  }

  private async allow(sha256: string, path: string): Promise<void> {
    const all = await this.allowed();
    all.set(sha256, { path, time: new Date().toISOString() });
    const list = [...all].map(([h, a]) => ({ sha256: h, ...a }));
    await writeFile(join(this.dir, 'allowed.json'), `${JSON.stringify(list, null, 2)}\n`, { mode: 0o600 });
  }

  private binPath(id: string): string {
    return join(this.dir, `${id}.bin`);
  }

  private recordPath(id: string): string {
    return join(this.dir, `${id}.json`);
  }
}

/** rename(2), or copy and unlink across file systems. */
async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    await copyFile(from, to);
    await unlink(from);
  }
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}
