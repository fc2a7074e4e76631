/**
 * The on-access agent (issue 8, done-when 3) on real folders with the builtin engine: an EICAR
 * write is quarantined (latency measured and reported; asserted only against a generous bound, the
 * machine is shared), clean files stay untouched, 10,000 files written at once are all scanned with
 * the pending set bounded, a folder created later is watched, --initial-scan finds what was there,
 * a remote daemon works through the clamd backend, and restore puts a file back.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Agent, type AgentResult } from '../../src/agent/agent.js';
import { Quarantine } from '../../src/agent/quarantine.js';
import { ClamdScanner } from '../../src/engine/backends/clamd.js';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { BuiltinScanner } from '../../src/engine/scanner.js';
import { silentLogger } from '../../src/logger.js';
import { startScangateClamd } from '../helpers/clamd-daemon.js';
import { EICAR } from '../helpers/eicar.js';

let dir: string;
let scanner: BuiltinScanner;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sg-agent-'));
  scanner = await createBuiltinScanner();
});
after(() => rmSync(dir, { recursive: true, force: true }));

function waitFor(
  results: AgentResult[],
  pred: (r: AgentResult) => boolean,
  ms = 30_000,
): Promise<AgentResult> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      const hit = results.find(pred);
      if (hit) return resolve(hit);
      if (Date.now() - t0 > ms) return reject(new Error(`no matching result within ${ms} ms`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

async function startAgent(name: string, extra: Partial<ConstructorParameters<typeof Agent>[0]> = {}) {
  const watched = join(dir, name, 'watched');
  mkdirSync(watched, { recursive: true });
  const quarantine = new Quarantine(join(dir, name, 'quarantine'));
  const results: AgentResult[] = [];
  const agent = new Agent({
    roots: [watched],
    scanner,
    quarantine,
    logger: silentLogger,
    onResult: (r) => results.push(r),
    ...extra,
  });
  await agent.start();
  return { agent, watched, quarantine, results };
}

test('EICAR written into a watched folder is quarantined (0600, JSON record); clean files stay; restore', async (t) => {
  const { agent, watched, quarantine, results } = await startAgent('basic');
  try {
    mkdirSync(join(watched, 'sub'));
    const clean = join(watched, 'sub', 'notes.txt');
    writeFileSync(clean, 'meeting at ten\n');
    const bad = join(watched, 'sub', 'invoice.pdf.exe');
    const t0 = performance.now();
    writeFileSync(bad, EICAR);
    const r = await waitFor(results, (x) => x.path === bad && !!x.quarantined);
    const latency = performance.now() - t0;
    t.diagnostic(
      `EICAR write -> quarantined in ${latency.toFixed(0)} ms (agent-measured ${r.latencyMs.toFixed(0)} ms)`,
    );
    assert.ok(latency < 10_000, `quarantine took ${latency} ms`);
    await waitFor(results, (x) => x.path === clean);
    await agent.idle();

    assert.throws(() => statSync(bad), /ENOENT/);
    assert.equal(readFileSync(clean, 'utf8'), 'meeting at ten\n');
    const [rec, ...rest] = await quarantine.list();
    assert.equal(rest.length, 0);
    assert.equal(rec!.originalPath, bad);
    assert.equal(rec!.signature, 'Eicar-Signature');
    assert.equal(rec!.sha256, '275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f');
    assert.ok(!Number.isNaN(Date.parse(rec!.time)));
    const binMode = statSync(join(quarantine.dir, `${rec!.id}.bin`)).mode & 0o777;
    const jsonMode = statSync(join(quarantine.dir, `${rec!.id}.json`)).mode & 0o777;
    assert.equal(binMode, 0o600);
    assert.equal(jsonMode, 0o600);
    assert.equal(statSync(quarantine.dir).mode & 0o777, 0o700);

    // Restore refuses to overwrite, then puts the file back byte for byte; the running agent sees
    // it appear, finds it infected, and leaves it because an operator restored that content.
    writeFileSync(bad, 'a new file took its place');
    await assert.rejects(quarantine.restore(rec!.id), /exists/);
    rmSync(bad);
    assert.equal(await quarantine.restore(rec!.id), bad);
    await waitFor(results, (x) => x.path === bad && x.allowed === true);
    await agent.idle();
    assert.deepEqual(readFileSync(bad), EICAR);
    assert.deepEqual(await quarantine.list(), []);
    await assert.rejects(quarantine.restore('../../etc/passwd'), /not a quarantine id/);
  } finally {
    agent.close();
  }
});

test('10,000 files written at once: every one scanned, none missed, pending bounded', async (t) => {
  const { agent, watched, results } = await startAgent('storm', { maxPending: 4000, concurrency: 8 });
  try {
    const before = scanner.counters.scans;
    const rss0 = process.memoryUsage().rss;
    const paths: string[] = [];
    for (let d = 0; d < 10; d++) mkdirSync(join(watched, `d${d}`));
    for (let i = 0; i < 10_000; i++) paths.push(join(watched, `d${i % 10}`, `f${i}.txt`));
    // Written as fast as the file system takes them, 200 at a time.
    for (let i = 0; i < paths.length; i += 200)
      await Promise.all(paths.slice(i, i + 200).map((p, j) => writeFile(p, `file ${i + j}\n`)));
    writeFileSync(join(watched, 'd3', 'eicar.com'), EICAR);
    const deadline = Date.now() + 180_000;
    const seen = new Set<string>();
    while (Date.now() < deadline) {
      for (const r of results) seen.add(r.path);
      if (paths.every((p) => seen.has(p)) && seen.has(join(watched, 'd3', 'eicar.com'))) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await agent.idle();
    for (const r of results) seen.add(r.path);
    const missed = paths.filter((p) => !seen.has(p));
    assert.deepEqual(missed.slice(0, 5), [], `${missed.length} files never scanned`);
    assert.ok(results.some((r) => r.path.endsWith('eicar.com') && r.quarantined));
    assert.ok(agent.stats.peakPending <= 4000, `peak pending ${agent.stats.peakPending}`);
    const rssGrowth = (process.memoryUsage().rss - rss0) / 1024 / 1024;
    t.diagnostic(
      `10,000 files: ${agent.stats.scanned} scans by the agent, ${scanner.counters.scans - before} by the engine, peak pending ${agent.stats.peakPending}, overflows ${agent.stats.overflows}, rss +${rssGrowth.toFixed(0)} MB`,
    );
  } finally {
    agent.close();
  }
});

test('--initial-scan finds what is already there; a folder created later is watched', async () => {
  const pre = join(dir, 'initial', 'watched', 'old');
  mkdirSync(pre, { recursive: true });
  writeFileSync(join(pre, 'eicar.com'), EICAR);
  const { agent, watched, results } = await startAgent('initial', { initialScan: true });
  try {
    await waitFor(results, (r) => r.path === join(pre, 'eicar.com') && !!r.quarantined);
    const later = join(watched, 'new', 'deeper');
    mkdirSync(later, { recursive: true });
    writeFileSync(join(later, 'x.com'), EICAR);
    await waitFor(results, (r) => r.path === join(later, 'x.com') && !!r.quarantined);
  } finally {
    agent.close();
  }
});

test('the agent scans through a remote clamd-protocol daemon (the clamd backend)', async () => {
  const daemon = await startScangateClamd(scanner, { listen: join(dir, 'remote.sock') });
  const remote = new ClamdScanner({ address: daemon.address });
  const { agent, watched, results } = await startAgent('remote', { scanner: remote });
  try {
    writeFileSync(join(watched, 'a.com'), EICAR);
    writeFileSync(join(watched, 'b.txt'), 'fine');
    const a = await waitFor(results, (r) => r.path === join(watched, 'a.com'));
    assert.equal(a.verdict.status, 'infected');
    assert.ok(a.quarantined);
    const b = await waitFor(results, (r) => r.path === join(watched, 'b.txt'));
    assert.equal(b.verdict.status, 'clean');
    assert.equal(daemon.events.events.filter((e) => e.signature === 'Eicar-Signature').length, 1);
  } finally {
    agent.close();
    await daemon.service.close(0);
  }
});
