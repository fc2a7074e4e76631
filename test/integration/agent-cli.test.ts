/**
 * `scangate agent` and `scangate quarantine` as an operator runs them: the agent process scans
 * through a clamd-protocol daemon (scangate's, in this process) and quarantines an EICAR write;
 * `quarantine list` shows it, `quarantine restore` puts it back; and with the local engine,
 * `--initial-scan` finds a file that was there before it started.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createBuiltinScanner } from '../../src/engine/index.js';
import { type ScangateClamd, startScangateClamd } from '../helpers/clamd-daemon.js';
import { EICAR } from '../helpers/eicar.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'scangate.js');
const env = { ...process.env, SCANGATE_FROM_SOURCE: '1', SCANGATE_LOG_LEVEL: 'warn' };
let dir: string;
let daemon: ScangateClamd;
const children: ChildProcess[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sg-agent-cli-'));
  daemon = await startScangateClamd(await createBuiltinScanner(), { listen: join(dir, 'clamd.sock') });
});
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await daemon.service.close(0);
  rmSync(dir, { recursive: true, force: true });
});

function scangate(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, encoding: 'utf8', timeout: 60_000 }, (e, out, err) =>
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, out, err }),
    );
  });
}

/** Starts the agent; resolves with a function waiting for a stdout line matching `re`. */
async function startAgent(args: string[]) {
  const child = spawn(process.execPath, [BIN, 'agent', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const line = (re: RegExp, ms = 60_000) =>
    new Promise<string>((resolve, reject) => {
      const t0 = Date.now();
      const tick = () => {
        const m = out.split('\n').find((l) => re.test(l));
        if (m) return resolve(m);
        if (child.exitCode !== null || Date.now() - t0 > ms)
          return reject(new Error(`no line ${re} (exit ${child.exitCode}); stdout: ${out} stderr: ${err}`));
        setTimeout(tick, 50);
      };
      tick();
    });
  await line(/^scangate agent: watching /);
  return { child, line };
}

test('agent --server quarantines an EICAR write; quarantine list and restore', async () => {
  const watched = join(dir, 'watched');
  const q = join(dir, 'quarantine');
  mkdirSync(watched);
  const { child, line } = await startAgent([
    '--watch',
    watched,
    '--server',
    daemon.address,
    '--quarantine',
    q,
  ]);
  const bad = join(watched, 'report.exe');
  writeFileSync(bad, EICAR);
  writeFileSync(join(watched, 'fine.txt'), 'fine');
  const found = await line(/report\.exe: Eicar-Signature FOUND/);
  const id = /quarantined as (\S+)\)/.exec(found)![1]!;
  assert.equal(existsSync(bad), false);
  child.kill('SIGTERM');

  const list = await scangate(['quarantine', 'list', '--quarantine', q, '--json']);
  assert.equal(list.code, 0, list.err);
  const records = list.out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(records.length, 1);
  assert.equal(records[0].id, id);
  assert.equal(records[0].originalPath, bad);
  assert.equal(records[0].signature, 'Eicar-Signature');

  const restored = await scangate(['quarantine', 'restore', id, '--quarantine', q]);
  assert.equal(restored.code, 0, restored.err);
  assert.deepEqual(readFileSync(bad), EICAR);
  assert.equal(readFileSync(join(watched, 'fine.txt'), 'utf8'), 'fine');
  const again = await scangate(['quarantine', 'restore', id, '--quarantine', q]);
  assert.equal(again.code, 2);
  assert.match(again.err, /ERR_QUARANTINE_ID/);
});

test('agent with the local engine and --initial-scan finds a file already there', async () => {
  const watched = join(dir, 'initial');
  mkdirSync(join(watched, 'a', 'b'), { recursive: true });
  writeFileSync(join(watched, 'a', 'b', 'old.com'), EICAR);
  const { child, line } = await startAgent([
    '--watch',
    watched,
    '--quarantine',
    join(dir, 'q2'),
    '--initial-scan',
    '-c',
    writeConfig(),
  ]);
  await line(/old\.com: Eicar-Signature FOUND \(quarantined as /);
  child.kill('SIGTERM');
});

function writeConfig(): string {
  const f = join(dir, 'agent.yaml');
  writeFileSync(f, `dataDir: ${join(dir, 'data')}\nlog: { level: warn }\n`);
  return f;
}
