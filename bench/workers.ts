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
 * and the ceiling "cores / cores busy with one worker" — the ratio if everything on the machine,
 * other people's work included, grew with the throughput until every core was busy. A last row
 * measures the machine itself: a pure CPU job in one process vs one per core at once.
 *
 * Bounded: each figure is a fixed number of downloads; prints a table and writes
 * bench/results/workers.json. BENCH_ROUNDS (default 3) rounds, median reported.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { selfSignedCert } from '../test/helpers/pki.js';
import { genPattern, rng } from '../test/helpers/sigdb.js';

const ROOT = join(import.meta.dirname, '..');
const OBJECT_MB = Number(process.env.BENCH_OBJECT_MB ?? 8);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 8);
const DOWNLOADS = Number(process.env.BENCH_DOWNLOADS ?? 48);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
// A database the size of ClamAV's (bench/match.ts's generator): scanning then costs what it costs in
// production. BENCH_DB=builtin scans with the built-in signatures only.
const DB = process.env.BENCH_DB ?? 'generated';
const children: ChildProcess[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

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

/** The origin: an HTTPS server in its own process; /obj/N is OBJECT_MB of bytes unique to N. */
const ORIGIN = `
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
const [cert, key, mb] = process.argv.slice(2);
const base = randomBytes(Number(mb) * 1024 * 1024);
const server = https.createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
  const n = Number(/\\/obj\\/(\\d+)/.exec(req.url ?? '')?.[1] ?? 0);
  const head = Buffer.from(String(n).padStart(16, '0'));
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': base.length });
  res.write(head);
  res.end(base.subarray(head.length));
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
`;

/** DOWNLOADS downloads by CLIENTS parallel curl processes through the proxy; aggregate MB/s. */
async function throughput(
  proxyPort: number,
  originPort: number,
  ca: string,
  unique: boolean,
  offset: number,
): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  let bytes = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < DOWNLOADS) {
        const i = next++;
        const path = unique ? `/obj/${offset + i}` : '/obj/0';
        const out = await new Promise<string>((resolve, reject) => {
          const c = spawn('curl', [
            '-s',
            '-o',
            '/dev/null',
            '-w',
            '%{http_code} %{size_download}',
            '--cacert',
            ca,
            '-x',
            `http://127.0.0.1:${proxyPort}`,
            `https://localhost:${originPort}${path}`,
          ]);
          let s = '';
          c.stdout.on('data', (d) => {
            s += d;
          });
          c.on('close', () => resolve(s));
          c.on('error', reject);
        });
        const [code, size] = out.split(' ');
        if (code !== '200' || Number(size) !== OBJECT_MB * 1024 * 1024)
          throw new Error(`download ${path}: ${out}`);
        bytes += Number(size);
      }
    }),
  );
  return bytes / 1024 / 1024 / ((performance.now() - t0) / 1000);
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
  const sg = start(process.execPath, [join(ROOT, 'bin/scangate.js'), 'run', '-c', file], {
    SCANGATE_FROM_SOURCE: '1',
  });
  sg.stderr!.on('data', (d) => process.env.BENCH_VERBOSE && process.stderr.write(d));
  await lineMatching(sg, /web \(http\) listening on/, 180_000);
  return {
    port,
    pid: sg.pid!,
    async metric(name: string): Promise<number> {
      const r = await fetch(`http://127.0.0.1:${adminPort}/metrics`, {
        headers: { authorization: 'Bearer bench-token-0123456789abcdef' },
      });
      const text = await r.text();
      return text
        .split('\n')
        .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
        .reduce((a, l) => a + Number(l.split(' ').pop()), 0);
    },
    async stop() {
      sg.kill('SIGTERM');
      await new Promise((r) => sg.once('exit', r));
    },
  };
}

/** CPU seconds used so far by a process and its children (cluster workers), from /proc. */
function cpuSeconds(pid: number): number {
  let total = 0;
  const visit = (p: number) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(f[11]) + Number(f[12])) / 100;
      for (const t of readdirSync(`/proc/${p}/task`))
        for (const c of readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').split(' ').filter(Boolean))
          visit(Number(c));
    } catch {
      // exited
    }
  };
  visit(pid);
  return total;
}

/** Busy CPU seconds of the whole machine so far (every process, ours and others'). */
function machineBusySeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!) / 100;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  const dir = mkdtempSync(join(os.tmpdir(), 'sg-bench-workers-'));
  try {
    const originCert = await selfSignedCert({ commonName: 'localhost', dnsNames: ['localhost'] });
    writeFileSync(join(dir, 'origin.crt'), originCert.certPem);
    writeFileSync(join(dir, 'origin.key'), originCert.keyPem);
    const originCa = join(dir, 'origin.crt');
    writeFileSync(join(dir, 'origin.mjs'), ORIGIN);
    const origin = start(process.execPath, [
      join(dir, 'origin.mjs'),
      originCa,
      join(dir, 'origin.key'),
      String(OBJECT_MB),
    ]);
    const originPort = (JSON.parse(await lineMatching(origin, /^\{/)) as { port: number }).port;
    const cores = os.availableParallelism();

    const signatures = DB === 'builtin' ? [] : writeDatabase(dir);
    const one = await scangate(dir, 1, originCa, signatures);
    const ca = join(dir, 'data', 'ca.crt');
    readFileSync(ca);
    const many = await scangate(dir, 'auto', originCa, signatures);
    console.log(
      `${DOWNLOADS} downloads of ${OBJECT_MB} MB over HTTPS, ${CLIENTS} parallel curl clients; 1 worker vs auto (${cores} workers), ${ROUNDS} rounds alternating; signatures: ${DB === 'builtin' ? 'built-in' : '20,000 body + 200,000 hash (generated)'}…`,
    );
    const r1: number[] = [];
    const rN: number[] = [];
    const c1: number[] = [];
    const cN: number[] = [];
    // Cores busy during each distinct-object run: scangate (all its processes), origin, whole machine.
    type Use = { scangateCores: number; originCores: number; machineCores: number };
    const use1: Use[] = [];
    const useN: Use[] = [];
    let offset = 1;
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which goes first so machine noise falls on both alike.
      const order = round % 2 === 0 ? [one, many] : [many, one];
      for (const sg of order) {
        const cpu0 = cpuSeconds(sg.pid);
        const origin0 = cpuSeconds(origin.pid!);
        const busy0 = machineBusySeconds();
        const t0 = performance.now();
        const mbps = await throughput(sg.port, originPort, ca, true, offset);
        const wall = (performance.now() - t0) / 1000;
        offset += DOWNLOADS;
        (sg === one ? r1 : rN).push(mbps);
        (sg === one ? use1 : useN).push({
          scangateCores: (cpuSeconds(sg.pid) - cpu0) / wall,
          originCores: (cpuSeconds(origin.pid!) - origin0) / wall,
          machineCores: (machineBusySeconds() - busy0) / wall,
        });
      }
      for (const sg of order)
        (sg === one ? c1 : cN).push(await throughput(sg.port, originPort, ca, false, 0));
    }
    const shared = await many.metric('scangate_verdict_cache_hits_total');
    const ratio = await many.metric('scangate_verdict_cache_hit_ratio');
    await one.stop();
    await many.stop();

    // The price of sharing verdicts: relay 20,000 through a primary to one other worker.
    const ipc = await ipcCost();
    const machine = await machineScaling(cores);

    const results = {
      machine: { cpu: os.cpus()[0]?.model, cores, node: process.version },
      setup: { objectMB: OBJECT_MB, clients: CLIENTS, downloads: DOWNLOADS, rounds: ROUNDS, database: DB },
      unique: {
        oneWorkerMBps: r1,
        autoMBps: rN,
        medianOne: median(r1),
        medianAuto: median(rN),
        ratio: median(rN) / median(r1),
        coresOne: use1,
        coresAuto: useN,
        // If everything on the machine grows with throughput, the whole machine busy allows this much.
        ceiling: cores / median(use1.map((u) => u.machineCores)),
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
    };
    const f = (n: number) => n.toFixed(2);
    console.table([
      {
        figure: `distinct ${OBJECT_MB} MB objects, MB/s`,
        '1 worker': f(median(r1)),
        [`auto (${cores})`]: f(median(rN)),
        ratio: `${f(results.unique.ratio)}×`,
        bar: '≥1.6×',
      },
      {
        figure: 'cores busy: scangate / origin / machine',
        '1 worker': use1
          .map((u) => `${f(u.scangateCores)}/${f(u.originCores)}/${f(u.machineCores)}`)
          .join(' '),
        [`auto (${cores})`]: useN
          .map((u) => `${f(u.scangateCores)}/${f(u.originCores)}/${f(u.machineCores)}`)
          .join(' '),
        ratio: `ceiling ${f(cores / median(use1.map((u) => u.machineCores)))}×`,
        bar: '',
      },
      {
        figure: `same object (cache), MB/s`,
        '1 worker': f(median(c1)),
        [`auto (${cores})`]: f(median(cN)),
        ratio: `${f(results.cached.ratio)}×`,
        bar: '',
      },
      {
        figure: 'machine: SHA-256 MB/s, 1 vs all cores',
        '1 worker': f(machine.solo),
        [`auto (${cores})`]: f(machine.parallel),
        ratio: `${f(machine.ratio)}×`,
        bar: `≈${cores}× when idle`,
      },
      {
        figure: 'verdict sharing IPC, msgs/s',
        '1 worker': '-',
        [`auto (${cores})`]: f(ipc.relayedPerSecond),
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
/**
 * The machine itself as the peer: SHA-256 over 1 MiB buffers for 2 s in one process, then in as many
 * processes as cores at once. On an idle machine the ratio is about the core count; when other work
 * holds the cores it is what a second worker could possibly add right now.
 */
async function machineScaling(cores: number): Promise<{ solo: number; parallel: number; ratio: number }> {
  const job = `const { createHash } = require('node:crypto'); const b = Buffer.alloc(1 << 20, 7);
    const t0 = performance.now(); let n = 0;
    while (performance.now() - t0 < 2000) { createHash('sha256').update(b).digest(); n++; }
    console.log(JSON.stringify({ mbps: n / 2 }));`;
  const run = async (k: number) => {
    const procs = Array.from({ length: k }, () => start(process.execPath, ['-e', job]));
    const rates = await Promise.all(
      procs.map(async (c) => (JSON.parse(await lineMatching(c, /^\{/)) as { mbps: number }).mbps),
    );
    return rates.reduce((a, b) => a + b, 0);
  };
  const solo = await run(1);
  const parallel = await run(cores);
  return { solo, parallel, ratio: parallel / solo };
}

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
