/**
 * `workers: N` benchmark (issue 9, done-when 4): HTTPS download throughput through scangate with
 * 1 worker vs `workers: auto` (one per core), parallel clients, measured in the same run against
 * the same origin. Every download is a distinct object (the origin varies the first bytes), so the
 * engine scans each one rather than answering from the verdict cache; a second figure repeats one
 * object so the shared cache answers. Also reported: the cost of sharing a verdict between workers
 * (IPC messages per second relayed by the primary).
 *
 * The clients and the origin run on the same cores as scangate, so the ratio cannot exceed what is
 * left to scangate: the table shows the cores busy (scangate, origin, whole machine) during each run,
 * CPU ms per MB of each part (scangate's workers — event loop and other threads —, its primary, the
 * curl clients, the origin), and the ceiling "cores / cores busy with one worker" — the ratio if
 * everything on the machine, other people's work included, grew with the throughput until every core
 * was busy. The "idle bound" next to the CPU per MB is the ratio to this run's one worker if the
 * machine ran nothing else, every core were busy with auto's parts at the CPU per MB they cost in
 * this run, and the workers' event loops cost per MB no more than one worker's: auto at its best.
 * The last rows measure the machine itself, in one process vs one per core: a pure CPU job
 * (SHA-256), and the engine alone with the same database (each process its own compiled matcher, as
 * each worker has), which tells whether two copies of a ClamAV-sized matcher slow each other down.
 *
 * Each scangate gets an untimed warm-up of distinct downloads first (JIT, minted leaf, upstream TLS
 * sessions, the first collection of what loading the database left behind): a gateway runs warm,
 * and with two workers that warm-up is paid twice. Every timed download is checked from scangate's
 * side too: one client connection, one TLS handshake and one scan each.
 *
 * Bounded: each figure is a fixed number of downloads; prints a table and writes
 * bench/results/workers.json. BENCH_ROUNDS (default 3) rounds, median reported;
 * BENCH_SCANGATE_NODE_ARGS passes node options to scangate (e.g. --cpu-prof, --trace-gc).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { selfSignedCert } from '../test/helpers/pki.js';
import { genPattern, rng } from '../test/helpers/sigdb.js';
import { freePort, median } from './lib/https-measure.js';
import {
  download,
  type LoadTarget,
  machineBusyMs,
  ORIGIN_SCRIPT,
  processCpuMs,
  reapedChildrenCpuMs,
  scangateCpu,
} from './lib/workers-load.js';
import { engineScaling, shaScaling } from './lib/workers-machine.js';

const ROOT = join(import.meta.dirname, '..');
const OBJECT_MB = Number(process.env.BENCH_OBJECT_MB ?? 8);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 8);
const DOWNLOADS = Number(process.env.BENCH_DOWNLOADS ?? 48);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 2 * CLIENTS);
// A database the size of ClamAV's (bench/match.ts's generator): scanning then costs what it costs in
// production. BENCH_DB=builtin scans with the built-in signatures only.
const DB = process.env.BENCH_DB ?? 'generated';
const NODE_ARGS = process.env.BENCH_SCANGATE_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
const children: ChildProcess[] = [];

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const c = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.push(c);
  return c;
}

function lineMatching(c: ChildProcess, re: RegExp, ms = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${re} within ${ms} ms`)), ms);
    const rl = createInterface({ input: c.stdout! });
    rl.on('line', (l) => {
      if (re.test(l)) {
        clearTimeout(timer);
        rl.close();
        resolve(l);
      }
    });
    c.once('exit', (code) => reject(new Error(`${c.spawnargs.join(' ')} exited ${code}`)));
  });
}

/** 20,000 body signatures of every form and 200,000 hash signatures, seeded (same every run). */
function writeDatabase(dir: string): string[] {
  const r = rng(7);
  const body = Array.from({ length: 20_000 }, (_, i) => {
    const offset = i % 10 === 0 ? `EOF-${r.int(100, 5000)}` : '*';
    // Leads of 10+ static bytes: random downloads never match by chance (ClamAV's own bodies are longer).
    return `Workers.Body.${i}:0:${offset}:${genPattern(r, { lead: [10, 16] }).hex}`;
  });
  const hashes = Array.from({ length: 200_000 }, (_, i) =>
    i % 2
      ? `${r.bytes(16).toString('hex')}:${r.int(1, 5_000_000)}:Workers.Md5.${i}`
      : `${r.bytes(32).toString('hex')}:${r.int(1, 5_000_000)}:Workers.Sha256.${i}`,
  );
  const files = [join(dir, 'bench.ndb'), join(dir, 'bench.hdb'), join(dir, 'bench.hsb')];
  writeFileSync(files[0]!, `${body.join('\n')}\n`);
  writeFileSync(files[1]!, `${hashes.filter((_, i) => i % 2).join('\n')}\n`);
  writeFileSync(files[2]!, `${hashes.filter((_, i) => i % 2 === 0).join('\n')}\n`);
  return files;
}

async function scangate(dir: string, workers: number | 'auto', originCa: string, signatures: string[]) {
  const port = await freePort();
  const adminPort = await freePort();
  const file = join(dir, `scangate-${workers}.yaml`);
  writeFileSync(
    file,
    [
      `dataDir: ${join(dir, 'data')}`,
      'log: { level: warn }',
      `workers: ${workers}`,
      `engine: { signatures: [${signatures.join(', ')}] }`,
      `tls: { upstream: { ca: [${originCa}] } }`,
      `listeners: [{ name: web, protocol: http, listen: 127.0.0.1:${port}, maxConnections: 5000 }]`,
      `admin: { listen: 127.0.0.1:${adminPort}, token: bench-token-0123456789abcdef }`,
      'events: null',
    ].join('\n'),
  );
  const sg = start(process.execPath, [...NODE_ARGS, join(ROOT, 'bin/scangate.js'), 'run', '-c', file], {
    SCANGATE_FROM_SOURCE: '1',
  });
  sg.stderr!.on('data', (d) => process.env.BENCH_VERBOSE && process.stderr.write(d));
  await lineMatching(sg, /web \(http\) listening on/, 180_000);
  // Keep reading: a pipe nobody drains would stall scangate at its next line of output.
  sg.stdout!.on('data', (d) => process.env.BENCH_VERBOSE && process.stdout.write(d));
  return {
    port,
    pid: sg.pid!,
    /** Sum of a metric's series, or of those whose labels contain `labels`. */
    async metric(name: string, labels = ''): Promise<number> {
      const r = await fetch(`http://127.0.0.1:${adminPort}/metrics`, {
        headers: { authorization: 'Bearer bench-token-0123456789abcdef' },
      });
      const text = await r.text();
      return text
        .split('\n')
        .filter((l) => l.startsWith(`${name} `) || (l.startsWith(`${name}{`) && l.includes(labels)))
        .reduce((a, l) => a + Number(l.split(' ').pop()), 0);
    },
    async stop() {
      sg.kill('SIGTERM');
      await new Promise((r) => sg.once('exit', r));
    },
  };
}

type Scangate = Awaited<ReturnType<typeof scangate>>;

/** One timed run of distinct downloads: throughput, and CPU ms of each part over its wall time. */
interface Run {
  mbps: number;
  wallMs: number;
  mb: number;
  cpuMs: {
    workerMain: number;
    workerThreads: number;
    primary: number;
    clients: number;
    origin: number;
    machine: number;
  };
}

/** Counters that say what scangate did per download. */
async function work(sg: Scangate) {
  return {
    connections: await sg.metric('scangate_connections_total'),
    handshakes: await sg.metric('scangate_tls_handshakes_total', 'side="client"'),
    scanned: await sg.metric('scangate_objects_scanned_total'),
  };
}

async function timedRun(sg: Scangate, target: LoadTarget, originPid: number, paths: string[]): Promise<Run> {
  const w0 = await work(sg);
  const sg0 = scangateCpu(sg.pid);
  const clients0 = reapedChildrenCpuMs();
  const origin0 = processCpuMs(originPid);
  const machine0 = machineBusyMs();
  const t0 = performance.now();
  const mbps = await download(target, paths, CLIENTS);
  const wallMs = performance.now() - t0;
  const sg1 = scangateCpu(sg.pid);
  const cpuMs = {
    workerMain: sg1.workers.main - sg0.workers.main,
    workerThreads: sg1.workers.threads - sg0.workers.threads,
    primary: sg1.primary.main + sg1.primary.threads - sg0.primary.main - sg0.primary.threads,
    clients: reapedChildrenCpuMs() - clients0,
    origin: processCpuMs(originPid) - origin0,
    machine: machineBusyMs() - machine0,
  };
  const w1 = await work(sg);
  // The same work per download as one curl process per download made: a connection, a full
  // handshake and a scan each (the metrics are read outside the timed window).
  for (const k of ['connections', 'handshakes', 'scanned'] as const)
    if (w1[k] - w0[k] !== paths.length)
      throw new Error(`${paths.length} downloads but ${w1[k] - w0[k]} ${k} in scangate`);
  return { mbps, wallMs, mb: (paths.length * target.objectBytes) / 1024 / 1024, cpuMs };
}

const cores = (run: Run, ms: number) => ms / run.wallMs;
const perMb = (runs: Run[], part: keyof Run['cpuMs']) => median(runs.map((r) => r.cpuMs[part] / r.mb));
const f = (n: number) => n.toFixed(2);

/** Per round: cores busy with scangate (all its processes) / the origin / the whole machine. */
function busyCores(runs: Run[]): string {
  return runs
    .map((r) =>
      [r.cpuMs.workerMain + r.cpuMs.workerThreads + r.cpuMs.primary, r.cpuMs.origin, r.cpuMs.machine]
        .map((ms) => f(cores(r, ms)))
        .join('/'),
    )
    .join(' ');
}

/** Median CPU ms per MB of each part. */
function cpuPerMb(runs: Run[]) {
  return {
    workerMain: perMb(runs, 'workerMain'),
    workerThreads: perMb(runs, 'workerThreads'),
    primary: perMb(runs, 'primary'),
    clients: perMb(runs, 'clients'),
    origin: perMb(runs, 'origin'),
  };
}

/** MB/s with every core busy, auto's parts at their CPU per MB but the event loops at one worker's. */
function idleBound(
  one: ReturnType<typeof cpuPerMb>,
  auto: ReturnType<typeof cpuPerMb>,
  cpus: number,
): number {
  const msPerMb = one.workerMain + auto.workerThreads + auto.primary + auto.clients + auto.origin;
  return (cpus * 1000) / msPerMb;
}

function cpuPerMbRow(runs: Run[]): string {
  const p = cpuPerMb(runs);
  return `${f(p.workerMain)}+${f(p.workerThreads)}/${f(p.primary)}/${f(p.clients)}/${f(p.origin)}`;
}

async function main() {
  const dir = mkdtempSync(join(os.tmpdir(), 'sg-bench-workers-'));
  try {
    const originCert = await selfSignedCert({ commonName: 'localhost', dnsNames: ['localhost'] });
    writeFileSync(join(dir, 'origin.crt'), originCert.certPem);
    writeFileSync(join(dir, 'origin.key'), originCert.keyPem);
    const originCa = join(dir, 'origin.crt');
    writeFileSync(join(dir, 'origin.mjs'), ORIGIN_SCRIPT);
    const origin = start(process.execPath, [
      join(dir, 'origin.mjs'),
      originCa,
      join(dir, 'origin.key'),
      String(OBJECT_MB),
    ]);
    const originPort = (JSON.parse(await lineMatching(origin, /^\{/)) as { port: number }).port;
    const cpus = os.availableParallelism();

    const signatures = DB === 'builtin' ? [] : writeDatabase(dir);
    const one = await scangate(dir, 1, originCa, signatures);
    const ca = join(dir, 'data', 'ca.crt');
    readFileSync(ca);
    const many = await scangate(dir, 'auto', originCa, signatures);
    const targetOf = (sg: Scangate): LoadTarget => ({
      proxyPort: sg.port,
      originPort,
      ca,
      objectBytes: OBJECT_MB * 1024 * 1024,
    });
    const objects = (from: number, n: number) => Array.from({ length: n }, (_, i) => `/obj/${from + i}`);
    console.log(
      `${DOWNLOADS} downloads of ${OBJECT_MB} MB over HTTPS, ${CLIENTS} parallel curl clients; 1 worker vs auto (${cpus} workers), ${ROUNDS} rounds alternating after ${WARMUP} untimed downloads each; signatures: ${DB === 'builtin' ? 'built-in' : '20,000 body + 200,000 hash (generated)'}…`,
    );
    let offset = 1;
    for (const sg of [one, many]) {
      if (WARMUP > 0) await download(targetOf(sg), objects(offset, WARMUP), CLIENTS);
      offset += WARMUP;
    }
    const runs1: Run[] = [];
    const runsN: Run[] = [];
    const c1: number[] = [];
    const cN: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which goes first so machine noise falls on both alike.
      const order = round % 2 === 0 ? [one, many] : [many, one];
      for (const sg of order) {
        const run = await timedRun(sg, targetOf(sg), origin.pid!, objects(offset, DOWNLOADS));
        (sg === one ? runs1 : runsN).push(run);
        offset += DOWNLOADS;
      }
      for (const sg of order)
        (sg === one ? c1 : cN).push(await download(targetOf(sg), Array(DOWNLOADS).fill('/obj/0'), CLIENTS));
    }
    const shared = await many.metric('scangate_verdict_cache_hits_total');
    const ratio = await many.metric('scangate_verdict_cache_hit_ratio');
    await one.stop();
    await many.stop();

    // The price of sharing verdicts: relay 20,000 through a primary to one other worker.
    const ipc = await ipcCost();
    const machine = await shaScaling(cpus);
    const engineAlone = signatures.length ? await engineScaling(cpus, signatures) : null;

    const r1 = runs1.map((r) => r.mbps);
    const rN = runsN.map((r) => r.mbps);
    const results = {
      machine: { cpu: os.cpus()[0]?.model, cores: cpus, node: process.version },
      setup: {
        objectMB: OBJECT_MB,
        clients: CLIENTS,
        downloads: DOWNLOADS,
        warmup: WARMUP,
        rounds: ROUNDS,
        database: DB,
      },
      unique: {
        oneWorkerMBps: r1,
        autoMBps: rN,
        medianOne: median(r1),
        medianAuto: median(rN),
        ratio: median(rN) / median(r1),
        runsOne: runs1,
        runsAuto: runsN,
        cpuMsPerMbOne: cpuPerMb(runs1),
        cpuMsPerMbAuto: cpuPerMb(runsN),
        // If everything on the machine grows with throughput, the whole machine busy allows this much.
        ceiling: cpus / median(runs1.map((r) => cores(r, r.cpuMs.machine))),
        idleBound: idleBound(cpuPerMb(runs1), cpuPerMb(runsN), cpus) / median(r1),
      },
      cached: {
        oneWorkerMBps: c1,
        autoMBps: cN,
        medianOne: median(c1),
        medianAuto: median(cN),
        ratio: median(cN) / median(c1),
      },
      sharedCache: { hitsAcrossWorkers: shared, hitRatio: ratio, ...ipc },
      machineScaling: machine,
      engineScaling: engineAlone,
    };
    console.table([
      {
        figure: `distinct ${OBJECT_MB} MB objects, MB/s`,
        '1 worker': f(median(r1)),
        [`auto (${cpus})`]: f(median(rN)),
        ratio: `${f(results.unique.ratio)}×`,
        bar: '≥1.6×',
      },
      {
        figure: 'cores busy: scangate / origin / machine',
        '1 worker': busyCores(runs1),
        [`auto (${cpus})`]: busyCores(runsN),
        ratio: `ceiling ${f(results.unique.ceiling)}×`,
        bar: '',
      },
      {
        figure: 'CPU ms/MB: workers loop+threads / primary / curl / origin',
        '1 worker': cpuPerMbRow(runs1),
        [`auto (${cpus})`]: cpuPerMbRow(runsN),
        ratio: `idle bound ${f(results.unique.idleBound)}×`,
        bar: '',
      },
      {
        figure: `same object (cache), MB/s`,
        '1 worker': f(median(c1)),
        [`auto (${cpus})`]: f(median(cN)),
        ratio: `${f(results.cached.ratio)}×`,
        bar: '',
      },
      {
        figure: 'machine: SHA-256 MB/s, 1 vs all cores',
        '1 worker': f(machine.solo),
        [`auto (${cpus})`]: f(machine.parallel),
        ratio: `${f(machine.ratio)}×`,
        bar: `≈${cpus}× when idle`,
      },
      {
        figure: 'machine: engine alone (hash + match), MB/s, 1 vs all cores',
        '1 worker': engineAlone ? f(engineAlone.solo) : '-',
        [`auto (${cpus})`]: engineAlone ? f(engineAlone.parallel) : '-',
        ratio: engineAlone
          ? `${f(engineAlone.ratio)}× (cores busy ${f(engineAlone.soloCores ?? 0)} → ${f(engineAlone.parallelCores ?? 0)})`
          : '',
        bar: `≈${cpus}× when idle`,
      },
      {
        figure: 'verdict sharing IPC, msgs/s',
        '1 worker': '-',
        [`auto (${cpus})`]: f(ipc.relayedPerSecond),
        ratio: `${f(ipc.microsPerVerdict)} µs/verdict`,
        bar: '',
      },
    ]);
    writeFileSync(join(ROOT, 'bench/results/workers.json'), `${JSON.stringify(results, null, 2)}\n`);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One primary, two workers: worker A sends 20,000 cache-set messages, the primary relays them to B. */
async function ipcCost(): Promise<{ relayedPerSecond: number; microsPerVerdict: number }> {
  const script = join(os.tmpdir(), `sg-ipc-${process.pid}.mjs`);
  writeFileSync(
    script,
    `
import cluster from 'node:cluster';
const N = 20000;
if (cluster.isPrimary) {
  const a = cluster.fork({ ROLE: 'a' });
  const b = cluster.fork({ ROLE: 'b' });
  let t0 = 0;
  let ready = 0;
  // Both must be listening before the burst: a message that arrives before a worker's handler is lost.
  const go = () => { if (++ready === 2) { t0 = performance.now(); a.send({ t: 'start' }); } };
  a.on('message', (m) => (m.t === 'ready' ? go() : b.send(m)));
  b.on('message', (m) => {
    if (m.t === 'ready') return go();
    const s = (performance.now() - t0) / 1000;
    console.log(JSON.stringify({ s }));
    a.kill();
    b.kill();
    process.exit(0);
  });
} else if (process.env.ROLE === 'a') {
  process.on('message', () => {
    for (let i = 0; i < N; i++) process.send({ t: 'sg:cache-set', epoch: 0, db: 'local-0123456789ab', sha256: i.toString(16).padStart(64, '0'), verdict: { status: 'clean' } });
  });
  process.send({ t: 'ready' });
} else {
  let n = 0;
  process.on('message', () => { if (++n === N) process.send({ t: 'done' }); });
  process.send({ t: 'ready' });
}
`,
  );
  try {
    const c = start(process.execPath, [script]);
    const { s } = JSON.parse(await lineMatching(c, /^\{/)) as { s: number };
    return { relayedPerSecond: 20_000 / s, microsPerVerdict: (s / 20_000) * 1e6 };
  } finally {
    rmSync(script, { force: true });
  }
}

await main();
process.exit(0);
