/**
 * HTTPS gateway benchmark (issue 3, done-when 6), all measured in one run on loopback:
 *   - 100 MB HTTPS download: through scangate (scanning on) vs direct vs mitmdump (stream_large_bodies)
 *   - keep-alive small-response requests/s: through scangate vs direct
 *   - new TLS connections/s with a warm certificate cache: through scangate vs direct
 *   - RSS per idle intercepted connection (1,000 connections)
 * Each figure is printed as a ratio against its peer; results go to bench/results/https.json.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const ROOT = join(import.meta.dirname, '..');
const BIG_MB = Number(process.env.BENCH_BIG_MB ?? 100);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const IDLE_CONNECTIONS = Number(process.env.BENCH_IDLE ?? 1000);
const children: ChildProcess[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function start(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const c = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  children.push(c);
  return c;
}

function firstJsonLine<T>(c: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: c.stdout! });
    rl.on('line', (l) => {
      if (l.startsWith('{')) {
        rl.close();
        resolve(JSON.parse(l) as T);
      }
    });
    c.once('exit', (code) => reject(new Error(`${c.spawnargs.join(' ')} exited ${code}`)));
  });
}

async function waitPort(port: number, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`port ${port} did not open`);
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

/** curl's own measurement of one download: bytes/s. Median of `runs`. */
function download(url: string, ca: string, proxy?: string, proxyCa?: string, runs = 3): number {
  const speeds: number[] = [];
  for (let i = 0; i < runs; i++) {
    const args = [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{speed_download} %{http_code} %{size_download}',
      '--cacert',
      proxyCa ?? ca,
    ];
    if (proxy) args.push('-x', proxy);
    const [speed, code, size] = execFileSync('curl', [...args, url], {
      encoding: 'utf8',
      timeout: 300_000,
    }).split(' ');
    if (code !== '200' || Number(size) !== BIG_MB * 1024 * 1024)
      throw new Error(`download via ${proxy ?? 'direct'}: HTTP ${code}, ${size} bytes`);
    speeds.push(Number(speed));
  }
  return speeds.sort((a, b) => a - b)[Math.floor(runs / 2)]!;
}

async function client(job: object): Promise<number> {
  const c = start(process.execPath, [
    '--import',
    'tsx',
    join(ROOT, 'bench/lib/https-client.ts'),
    JSON.stringify(job),
  ]);
  const r = await firstJsonLine<{ rate: number }>(c);
  return r.rate;
}

async function main() {
  try {
    await import('../src/protocols/http/index.js' as string);
  } catch {
    console.log('skipped: the HTTP gateway (src/protocols/http) is not in this build yet');
    return null;
  }
  const dir = mkdtempSync(join(os.tmpdir(), 'sg-bench-https-'));
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout',
        join(dir, 'origin.key'),
        '-out',
        join(dir, 'origin.crt'),
      ],
      { stdio: 'ignore' },
    );
    const originCa = join(dir, 'origin.crt');

    const origin = start(process.execPath, [
      '--import',
      'tsx',
      join(ROOT, 'bench/lib/origin.ts'),
      originCa,
      join(dir, 'origin.key'),
      String(BIG_MB),
    ]);
    const { port: originPort } = await firstJsonLine<{ port: number }>(origin);
    const target = { host: 'localhost', port: originPort };

    const sgPort = await freePort();
    writeFileSync(
      join(dir, 'scangate.yaml'),
      [
        `dataDir: ${join(dir, 'data')}`,
        'log: { level: warn }',
        `tls: { upstream: { ca: [${originCa}] } }`,
        `listeners: [{ name: web, protocol: http, listen: 127.0.0.1:${sgPort}, maxConnections: 5000 }]`,
        'admin: null',
      ].join('\n'),
    );
    const sg = start(process.execPath, [
      join(ROOT, 'bin/scangate.js'),
      'run',
      '-c',
      join(dir, 'scangate.yaml'),
    ], { env: { SCANGATE_FROM_SOURCE: '1' } });
    sg.stderr!.on('data', (d) => process.env.BENCH_VERBOSE && process.stderr.write(d));
    await waitPort(sgPort);
    const sgCa = join(dir, 'data', 'ca.crt');

    const mitmPort = await freePort();
    start('mitmdump', [
      '--listen-host',
      '127.0.0.1',
      '--listen-port',
      String(mitmPort),
      '-q',
      '--set',
      `confdir=${join(dir, 'mitm')}`,
      '--set',
      'stream_large_bodies=1',
      '--set',
      `ssl_verify_upstream_trusted_ca=${originCa}`,
    ]);
    await waitPort(mitmPort);
    const mitmCa = join(dir, 'mitm', 'mitmproxy-ca-cert.pem');

    const url = `https://localhost:${originPort}/big`;
    console.log(`download ${BIG_MB} MB over HTTPS (curl, median of 3)…`);
    const direct = download(url, originCa);
    const viaScangate = download(url, originCa, `http://127.0.0.1:${sgPort}`, sgCa);
    const viaMitm = download(url, originCa, `http://127.0.0.1:${mitmPort}`, mitmCa);

    console.log(`keep-alive small requests for ${SECONDS}s (4 connections)…`);
    const base = { origin: target, ca: originCa, seconds: SECONDS, concurrency: 4 };
    const kaDirect = await client({ ...base, mode: 'keepalive' });
    const kaScangate = await client({
      ...base,
      mode: 'keepalive',
      proxy: { host: '127.0.0.1', port: sgPort },
      ca: sgCa,
    });

    console.log(`new TLS connections for ${SECONDS}s (concurrency 8, warm certificate cache)…`);
    const hsBase = { ...base, concurrency: 8 };
    const hsDirect = await client({ ...hsBase, mode: 'handshakes' });
    const hsScangate = await client({
      ...hsBase,
      mode: 'handshakes',
      proxy: { host: '127.0.0.1', port: sgPort },
      ca: sgCa,
    });

    console.log(`RSS with ${IDLE_CONNECTIONS} idle intercepted connections…`);
    await new Promise((r) => setTimeout(r, 2000));
    const rssBefore = rssKb(sg.pid!);
    const idle = start(process.execPath, [
      '--import',
      'tsx',
      join(ROOT, 'bench/lib/https-client.ts'),
      JSON.stringify({
        ...base,
        mode: 'idle',
        concurrency: 20,
        connections: IDLE_CONNECTIONS,
        proxy: { host: '127.0.0.1', port: sgPort },
        ca: sgCa,
      }),
    ]);
    const { open } = await firstJsonLine<{ open: number }>(idle);
    await new Promise((r) => setTimeout(r, 2000));
    const rssAfter = rssKb(sg.pid!);
    idle.stdin!.end();
    const perConnKb = (rssAfter - rssBefore) / open;

    const mb = (b: number) => b / 1024 / 1024;
    const results = {
      machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version },
      download: {
        sizeMB: BIG_MB,
        directMBps: mb(direct),
        scangateMBps: mb(viaScangate),
        mitmdumpMBps: mb(viaMitm),
        scangateVsDirect: viaScangate / direct,
        scangateVsMitmdump: viaScangate / viaMitm,
      },
      keepAlive: { directRps: kaDirect, scangateRps: kaScangate, ratio: kaScangate / kaDirect },
      newConnections: { directPerSec: hsDirect, scangatePerSec: hsScangate, ratio: hsScangate / hsDirect },
      idle: {
        connections: open,
        rssBeforeKiB: rssBefore,
        rssAfterKiB: rssAfter,
        perConnectionKiB: perConnKb,
      },
    };
    const f = (n: number) => n.toFixed(2);
    console.table([
      {
        figure: `${BIG_MB} MB download MB/s`,
        direct: f(mb(direct)),
        scangate: f(mb(viaScangate)),
        mitmdump: f(mb(viaMitm)),
        ratio: `${f(viaScangate / direct)}× direct, ${f(viaScangate / viaMitm)}× mitmdump`,
        bar: '≥0.5× direct, ≥1.0× mitmdump',
      },
      {
        figure: 'keep-alive req/s',
        direct: f(kaDirect),
        scangate: f(kaScangate),
        mitmdump: '-',
        ratio: `${f(kaScangate / kaDirect)}× direct`,
        bar: '',
      },
      {
        figure: 'new TLS conn/s',
        direct: f(hsDirect),
        scangate: f(hsScangate),
        mitmdump: '-',
        ratio: `${f(hsScangate / hsDirect)}× direct`,
        bar: '≥0.5× direct',
      },
      {
        figure: 'RSS per idle conn KiB',
        direct: '-',
        scangate: f(perConnKb),
        mitmdump: '-',
        ratio: '',
        bar: '<64 KiB',
      },
    ]);
    writeFileSync(join(ROOT, 'bench/results/https.json'), `${JSON.stringify(results, null, 2)}\n`);
    return results;
  } finally {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
