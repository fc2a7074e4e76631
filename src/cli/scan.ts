/**
 * `scangate scan [--db PATH]… [--json] [--allmatch] PATH…` — clamscan's line format (`PATH: OK`,
 * `PATH: NAME FOUND`, `PATH: REASON ERROR`; with --allmatch one FOUND line per match, as
 * `clamscan --allmatch`) and exit codes: 0 clean, 1 found, 2 error.
 */
import { opendir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { engineLimitsSchema } from '../config/schema.js';
import { MemoryVerdictCache } from '../engine/cache.js';
import { loadEngine } from '../engine/index.js';
import { BuiltinScanner } from '../engine/scanner.js';
import type { Verdict } from '../engine/types.js';
import { ScangateError } from '../errors.js';
import { verdictLines } from '../protocols/clamd/replies.js';

interface ScanOptions {
  db: string[];
  json?: boolean;
  summary?: boolean;
  version?: boolean;
  maxFileSize?: string;
  maxRecursion?: string;
  alertExceedsMax?: boolean;
  allmatch?: boolean;
}

/** Yields files under `path` depth-first in name order (clamscan -r order); errors become entries. */
async function* walk(path: string): AsyncGenerator<{ path: string; error?: string }> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (e) {
    yield { path, error: describeFsError(e) };
    return;
  }
  if (st.isFile()) {
    yield { path };
    return;
  }
  if (!st.isDirectory()) return;
  let names: string[];
  try {
    const dir = await opendir(path);
    names = [];
    for await (const d of dir) names.push(d.name);
  } catch (e) {
    yield { path, error: describeFsError(e) };
    return;
  }
  for (const name of names.sort()) yield* walk(join(path, name));
}

function describeFsError(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'ENOENT') return 'No such file or directory';
  if (err.code === 'EACCES') return 'Access denied';
  return err.message;
}

export function registerScan(program: Command): void {
  program
    .command('scan')
    .description('scan files and folders (recursively); prints clamscan-style lines')
    .argument('[paths...]', 'files or folders to scan')
    .option(
      '--db <path>',
      'add a ClamAV signature file or folder (repeatable)',
      (v, acc: string[]) => [...acc, v],
      [],
    )
    .option('--json', 'one JSON object per file instead of clamscan lines')
    .option('--summary', 'print a scan summary at the end')
    .option('-z, --allmatch', 'report every signature that matches, one line each (clamscan --allmatch)')
    .option('--version', 'print the engine and database version and exit')
    .option('--max-filesize <size>', 'largest file or extracted entry scanned (default 100MB)')
    .option('--max-recursion <n>', 'deepest container nesting (default 17)')
    .option(
      '--no-alert-exceeds-max',
      'report files over a limit as OK (like clamscan) instead of Heuristics.Limits.Exceeded',
    )
    .action(async (paths: string[], opts: ScanOptions) => {
      process.exitCode = await runScan(paths, opts);
    });
}

async function runScan(paths: string[], opts: ScanOptions): Promise<number> {
  let engine: Awaited<ReturnType<typeof loadEngine>>;
  try {
    engine = await loadEngine(opts.db);
  } catch (e) {
    const msg = e instanceof ScangateError ? e.message : (e as Error).message;
    process.stderr.write(`scangate: cannot load signatures: ${msg}\n`);
    return 2;
  }
  for (const u of engine.db.unsupported.slice(0, 5)) {
    process.stderr.write(`scangate: warning: ${u.file}:${u.line}: not supported: ${u.reason}\n`);
  }
  if (engine.db.unsupported.length > 5) {
    process.stderr.write(
      `scangate: warning: ${engine.db.unsupported.length} signatures not supported in all\n`,
    );
  }
  if (opts.version) {
    process.stdout.write(
      `scangate ${await packageVersion()}/${engine.version}/${engine.signatures} signatures${engine.db.buildTime ? ` (built ${engine.db.buildTime})` : ''}\n`,
    );
    return 0;
  }
  if (paths.length === 0) {
    process.stderr.write('scangate scan: name at least one file or folder\n');
    return 2;
  }
  const limits = engineLimitsSchema.parse({
    ...(opts.maxFileSize ? { maxFileSize: opts.maxFileSize } : {}),
    ...(opts.maxRecursion ? { maxRecursion: Number(opts.maxRecursion) } : {}),
    alertExceedsMax: opts.alertExceedsMax !== false,
  });
  const scanner = new BuiltinScanner(engine, { limits, cache: new MemoryVerdictCache(65_536) });
  const t0 = performance.now();
  let found = 0;
  let errors = 0;
  let files = 0;
  let bytes = 0;
  for (const target of paths) {
    for await (const item of walk(target)) {
      let verdict: Verdict;
      if (item.error) verdict = { status: 'error', reason: item.error };
      else {
        verdict = await scanner.scan(
          { path: item.path },
          { name: item.path, allMatches: opts.allmatch === true },
        );
        files++;
        bytes += (await stat(item.path).catch(() => ({ size: 0 }))).size;
      }
      if (verdict.status === 'infected') found++;
      if (verdict.status === 'error') errors++;
      process.stdout.write(
        opts.json
          ? `${JSON.stringify({ path: item.path, ...verdict })}\n`
          : verdictLines(item.path, verdict)
              .map((l) => `${l}\n`)
              .join(''),
      );
    }
  }
  if (opts.summary) {
    const secs = (performance.now() - t0) / 1000;
    process.stdout.write(
      `\n----------- SCAN SUMMARY -----------\nKnown viruses: ${engine.signatures}\nEngine version: scangate ${await packageVersion()}\n` +
        `Database version: ${engine.version}\nScanned files: ${files}\nInfected files: ${found}\nErrors: ${errors}\n` +
        `Data scanned: ${(bytes / 1048576).toFixed(2)} MB\nTime: ${secs.toFixed(3)} sec\n`,
    );
  }
  return errors > 0 ? 2 : found > 0 ? 1 : 0;
}

async function packageVersion(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}
