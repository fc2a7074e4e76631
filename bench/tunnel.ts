/**
 * mTLS tunnel benchmark (issue 6, done-when 5), one run, loopback, the same certificates for both:
 *   stream mode: throughput (MB/s, client → backend) and new connections/s (full mTLS handshake with
 *   a client certificate, CRL checked, one byte through to the backend and its answer back), through
 *   `scangate run` (tunnel listener, stream mode) and through stunnel4 in server mode;
 *   message mode: round trips/s of 1 KB requests pipelined over one connection with the client
 *   library (every frame MAC'd and verified, pooled backend connections), and for reference the same
 *   frames, unauthenticated, through stunnel's byte tunnel to the same backend.
 * Backends live in their own process (bench/lib/tunnel-backends.ts). Each figure is the median of
 * ROUNDS alternating rounds, after an untimed warm-up of both gateways. Results go to
 * bench/results/tunnel.json.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import tls from 'node:tls';
import { connect as tunnelConnect } from '../src/protocols/tunnel/client.js';
import { FrameDecoder, FrameType, FrameWriter } from '../src/protocols/tunnel/frame.js';
import { type IssuedCert, tunnelPki } from '../test/helpers/tunnel-pki.js';

const ROOT = join(import.meta.dirname, '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const STREAMS = Number(process.env.BENCH_TUNNEL_STREAMS ?? 4);
const CONNECTORS = Number(process.env.BENCH_TUNNEL_CONNECTORS ?? 16);
// A safety cap per stream, far above what a round moves: the round's time is what ends a stream.
// (Capped at 256 MB, four streams moved their 1 GB in about one second, whatever BENCH_SECONDS said.)
const STREAM_MB = Number(process.env.BENCH_TUNNEL_STREAM_MB ?? 16384);
const WINDOW = Number(process.env.BENCH_TUNNEL_WINDOW ?? 1024);
const MESSAGE = 1024;
const WARMUP_SECONDS = 1;
/** Comma-separated subset to run: throughput,connections,messages (default all). */
const ONLY = new Set((process.env.BENCH_TUNNEL_ONLY ?? 'throughput,connections,messages').split(','));
const children: ChildProcess[] = [];

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.push(c);
  c.stderr!.on('data', (d: Buffer) => {
    if (process.env.BENCH_VERBOSE) process.stderr.write(d);
  });
  return c;
}

function firstLine(c: ChildProcess, re: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: c.stdout! });
    rl.on('line', (l) => {
      if (re.test(l)) {
        rl.close();
        resolve(l);
      }
    });
    c.once('exit', (code) => reject(new Error(`${c.spawnargs.join(' ')} exited ${code}`)));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function waitPort(port: number, ms = 60_000): Promise<void> {
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
  throw new Error(`port ${port} never opened`);
}

interface Creds {
  ca: string;
  client: IssuedCert;
}

function dial(port: number, c: Creds): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: c.ca,
      cert: c.client.certPem,
      key: c.client.keyPem,
    });
    s.setNoDelay(true);
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Sends `bytes` then FIN, resolves with the count the backend answered. */
function pushAndCount(s: tls.TLSSocket, chunk: Buffer, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let answer = '';
    s.on('data', (d: Buffer) => {
      answer += d.toString();
    });
    s.once('end', () => resolve(Number(answer)));
    s.once('error', reject);
    let sent = 0;
    const pump = () => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!s.write(chunk)) {
          s.once('drain', pump);
          return;
        }
      }
      s.end();
    };
    pump();
  });
}

/** MB/s of STREAMS parallel connections each pushing `perStream` bytes to the count backend. */
async function throughput(port: number, c: Creds, seconds = SECONDS): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  const perStream = STREAM_MB * 1024 * 1024;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  // Bounded by count and time: each stream stops at perStream or when the round's time is up.
  const totals = await Promise.all(
    Array.from({ length: STREAMS }, async () => {
      const s = await dial(port, c);
      const limit = { bytes: perStream };
      const timer = setTimeout(() => {
        limit.bytes = 0;
      }, deadline - performance.now());
      const got = await pushAndCountBounded(s, chunk, limit);
      clearTimeout(timer);
      s.destroy();
      return got;
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  return totals.reduce((a, b) => a + b, 0) / secs / 1e6;
}

function pushAndCountBounded(s: tls.TLSSocket, chunk: Buffer, limit: { bytes: number }): Promise<number> {
  return new Promise((resolve, reject) => {
    let answer = '';
    s.on('data', (d: Buffer) => {
      answer += d.toString();
    });
    s.once('end', () => resolve(Number(answer)));
    s.once('error', reject);
    let sent = 0;
    const pump = () => {
      while (sent < limit.bytes) {
        sent += chunk.length;
        if (!s.write(chunk)) {
          s.once('drain', pump);
          return;
        }
      }
      s.end();
    };
    pump();
  });
}

/**
 * What one connection negotiates with a gateway: TLS version, cipher, and how many session tickets
 * the server sends (each one costs the server a session encoding; both gateways must do the same work).
 */
async function negotiated(port: number, c: Creds): Promise<string> {
  const s = await dial(port, c);
  let tickets = 0;
  s.on('session', () => tickets++);
  const kx = s.getEphemeralKeyInfo() as { name?: string };
  const suite = `${s.getProtocol()} ${s.getCipher().standardName} ${kx.name ?? ''}`;
  await pushAndCount(s, Buffer.from('x'), 1);
  s.destroy();
  return `${suite}, ${tickets} session ticket(s)`;
}

/** New connections/s: CONNECTORS loops of handshake → 1 byte → answer → close, for SECONDS. */
async function connectionRate(port: number, c: Creds, seconds = SECONDS): Promise<number> {
  const one = Buffer.from('x');
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  let done = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: CONNECTORS }, async () => {
      while (performance.now() < deadline) {
        try {
          const s = await dial(port, c);
          const n = await pushAndCount(s, one, 1);
          s.destroy();
          if (n === 1) done++;
          else failed++;
        } catch {
          failed++;
        }
      }
    }),
  );
  if (failed) console.error(`  (${failed} connection attempts failed)`);
  return done / ((performance.now() - t0) / 1000);
}

/** Message round trips/s through scangate's message mode with the client library. */
async function messageRate(port: number, c: Creds): Promise<number> {
  const client = await tunnelConnect({
    host: '127.0.0.1',
    port,
    servername: 'localhost',
    ca: c.ca,
    cert: c.client.certPem,
    key: c.client.keyPem,
  });
  const payload = Buffer.alloc(MESSAGE, 0x61);
  // Warm-up.
  await Promise.all(Array.from({ length: WINDOW }, () => client.request(payload)));
  let done = 0;
  const t0 = performance.now();
  const deadline = t0 + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: WINDOW }, async () => {
      while (performance.now() < deadline) {
        await client.request(payload);
        done++;
      }
    }),
  );
  const rate = done / ((performance.now() - t0) / 1000);
  await client.close();
  return rate;
}

/** The same 1 KB frames (no MAC, no verification) through stunnel's byte tunnel to the same backend. */
async function rawFrameRate(port: number, c: Creds): Promise<number> {
  const s = await dial(port, c);
  const payload = Buffer.alloc(MESSAGE, 0x61);
  const decoder = new FrameDecoder();
  const writer = new FrameWriter((b) => s.write(b));
  let done = 0;
  let stop = false;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    let outstanding = 0;
    s.on('data', (d: Buffer) => {
      decoder.push(d);
      for (let f = decoder.next(); f; f = decoder.next()) {
        if (f.type !== FrameType.RESPONSE) continue;
        done++;
        outstanding--;
        if (!stop) {
          writer.push(FrameType.REQUEST, done, payload);
          outstanding++;
        } else if (outstanding === 0) resolve();
      }
    });
    for (let i = 0; i < WINDOW; i++) writer.push(FrameType.REQUEST, i, payload);
    outstanding = WINDOW;
    setTimeout(() => {
      stop = true;
    }, SECONDS * 1000);
  });
  const rate = done / ((performance.now() - t0) / 1000);
  s.destroy();
  return rate;
}

/** [ppid, CPU ms (user + system)] of a process, from /proc (Linux); USER_HZ is 100. */
function procStat(pid: number | string): [number, number] | null {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return [Number(f[1]), ((Number(f[11]) + Number(f[12])) * 1000) / 100];
  } catch {
    return null;
  }
}

/** CPU milliseconds used so far by a process and its direct children (cluster workers). */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  let total = procStat(pid)?.[1] ?? Number.NaN;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = procStat(entry);
    if (st && st[0] === pid) total += st[1];
  }
  return total;
}

function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  const pki = await tunnelPki();
  const client = await pki.ca.issue({ commonName: 'bench-client', uri: ['spiffe://bench/client'] });
  const creds: Creds = { ca: pki.ca.certPem, client };

  const backends = start(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/lib/tunnel-backends.ts')]);
  const ports = JSON.parse(await firstLine(backends, /^\{/)) as { count: number; message: number };

  const [sgStream, sgMessage, stStream, stMessage] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const tlsBlock = `{ cert: ${pki.files.cert}, key: ${pki.files.key}, clientCa: ${pki.files.clientCa}, crl: ${pki.files.crl}, watch: false }`;
  const cfg = pki.dir.write(
    'scangate.yaml',
    [
      `dataDir: ${pki.dir.path('data')}`,
      'admin: null',
      'log: { level: warn }',
      // stunnel runs a thread per connection on every core; scangate's equivalent is one worker per core.
      `workers: ${process.env.BENCH_TUNNEL_WORKERS ?? 'auto'}`,
      'listeners:',
      `  - { name: stream, protocol: tunnel, listen: 127.0.0.1:${sgStream}, mode: stream, upstream: 127.0.0.1:${ports.count}, tls: ${tlsBlock}, allow: { uri: ["spiffe://bench/*"] } }`,
      `  - { name: message, protocol: tunnel, listen: 127.0.0.1:${sgMessage}, mode: message, upstream: 127.0.0.1:${ports.message}, tls: ${tlsBlock}, allow: { uri: ["spiffe://bench/*"] }, maxInFlight: ${WINDOW * 2} }`,
      '',
    ].join('\n'),
  );
  // BENCH_SCANGATE_NODE_ARGS="--cpu-prof" profiles the gateway.
  const nodeArgs = (process.env.BENCH_SCANGATE_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const scangate = start(process.execPath, [...nodeArgs, join(ROOT, 'bin/scangate.js'), 'run', '-c', cfg], {
    SCANGATE_FROM_SOURCE: '1',
  });
  const stunnelConf = pki.dir.write(
    'stunnel.conf',
    [
      'foreground = yes',
      'debug = 3',
      `pid = ${pki.dir.path('stunnel.pid')}`,
      `CAfile = ${pki.files.clientCa}`,
      `CRLfile = ${pki.files.crl}`,
      'verifyChain = yes',
      'requireCert = yes',
      `cert = ${pki.files.cert}`,
      `key = ${pki.files.key}`,
      '[stream]',
      `accept = 127.0.0.1:${stStream}`,
      `connect = 127.0.0.1:${ports.count}`,
      '[message]',
      `accept = 127.0.0.1:${stMessage}`,
      `connect = 127.0.0.1:${ports.message}`,
      '',
    ].join('\n'),
  );
  const stunnel = start('stunnel4', [stunnelConf]);
  await Promise.all([sgStream, sgMessage, stStream, stMessage].map((p) => waitPort(p)));

  const agreed = { scangate: await negotiated(sgStream, creds), stunnel: await negotiated(stStream, creds) };
  console.error(`negotiated: scangate ${agreed.scangate}; stunnel ${agreed.stunnel}`);
  const r = {
    throughput: {
      scangate: [] as number[],
      stunnel: [] as number[],
      cpuMsPerGb: { scangate: [] as number[], stunnel: [] as number[] },
    },
    connections: {
      scangate: [] as number[],
      stunnel: [] as number[],
      cpuMsPerConnection: { scangate: [] as number[], stunnel: [] as number[] },
    },
    messages: {
      scangate: [] as number[],
      stunnelRaw: [] as number[],
      cpuUs: [] as { gateway: number; backend: number; client: number }[],
    },
  };
  // Untimed warm-up of both gateways, as a gateway in service runs warm: without it scangate's first
  // stream round included compiling its relay path (1.3 s CPU per GB against 1.0-1.2 after it), and
  // with workers accepting for themselves each worker warms up on its own connections.
  if (ONLY.has('throughput') || ONLY.has('connections')) {
    console.error('warm-up (untimed)');
    for (const port of [stStream, sgStream]) {
      if (ONLY.has('throughput')) await throughput(port, creds, WARMUP_SECONDS);
      if (ONLY.has('connections')) await connectionRate(port, creds, WARMUP_SECONDS);
    }
  }
  for (let i = 0; i < ROUNDS; i++) {
    console.error(`round ${i + 1}/${ROUNDS}`);
    if (ONLY.has('throughput')) {
      // CPU per MB of each gateway process says more than MB/s on a shared, noisy machine.
      for (const [name, port, pid] of [
        ['stunnel', stStream, stunnel.pid],
        ['scangate', sgStream, scangate.pid],
      ] as const) {
        const c0 = cpuMs(pid);
        const t0 = performance.now();
        const mbps = await throughput(port, creds);
        const mb = (mbps * (performance.now() - t0)) / 1000;
        const msPerGb = round(((cpuMs(pid) - c0) / mb) * 1000);
        console.error(`  stream ${name}: ${round(mbps)} MB/s, gateway CPU ${msPerGb} ms per GB`);
        r.throughput[name].push(mbps);
        r.throughput.cpuMsPerGb[name].push(msPerGb);
      }
    }
    if (ONLY.has('connections')) {
      for (const [name, port, pid] of [
        ['scangate', sgStream, scangate.pid],
        ['stunnel', stStream, stunnel.pid],
      ] as const) {
        const c0 = cpuMs(pid);
        const t0 = performance.now();
        const rate = await connectionRate(port, creds);
        const n = (rate * (performance.now() - t0)) / 1000;
        const msPerConn = round((cpuMs(pid) - c0) / n, 2);
        console.error(`  connections ${name}: ${round(rate)}/s, gateway CPU ${msPerConn} ms per connection`);
        r.connections[name].push(rate);
        r.connections.cpuMsPerConnection[name].push(msPerConn);
      }
    }
    if (ONLY.has('messages') || ONLY.has('messages-scangate')) {
      const cpu0 = [cpuMs(scangate.pid), cpuMs(backends.pid), selfCpuMs()];
      const before = performance.now();
      const rate = await messageRate(sgMessage, creds);
      const n = (rate * (performance.now() - before)) / 1000;
      const cpu1 = [cpuMs(scangate.pid), cpuMs(backends.pid), selfCpuMs()];
      const us = cpu1.map((c, k) => round(((c - cpu0[k]!) * 1000) / n, 2));
      console.error(`  message mode CPU µs/round trip: gateway ${us[0]}, backend ${us[1]}, client ${us[2]}`);
      r.messages.cpuUs.push({ gateway: us[0]!, backend: us[1]!, client: us[2]! });
      r.messages.scangate.push(rate);
    }
    if (ONLY.has('messages')) {
      const st0 = [cpuMs(stunnel.pid), cpuMs(backends.pid), selfCpuMs()];
      const stBefore = performance.now();
      const stRate = await rawFrameRate(stMessage, creds);
      const stN = (stRate * (performance.now() - stBefore)) / 1000;
      const st1 = [cpuMs(stunnel.pid), cpuMs(backends.pid), selfCpuMs()];
      const stUs = st1.map((c, k) => round(((c - st0[k]!) * 1000) / stN, 2));
      console.error(
        `  raw frames via stunnel CPU µs/round trip: stunnel ${stUs[0]}, backend ${stUs[1]}, client ${stUs[2]}`,
      );
      r.messages.stunnelRaw.push(stRate);
    }
  }
  const m = {
    throughputMBps: {
      scangate: round(median(r.throughput.scangate)),
      stunnel: round(median(r.throughput.stunnel)),
    },
    connectionsPerSec: {
      scangate: round(median(r.connections.scangate)),
      stunnel: round(median(r.connections.stunnel)),
    },
    messagesPerSec: {
      scangate: Math.round(median(r.messages.scangate)),
      stunnelRawFrames: Math.round(median(r.messages.stunnelRaw)),
    },
  };
  const ratio = (a: number, b: number) => round(a / b, 2);
  const rows = [
    [
      'stream throughput (MB/s)',
      m.throughputMBps.scangate,
      m.throughputMBps.stunnel,
      ratio(m.throughputMBps.scangate, m.throughputMBps.stunnel),
      '≥ 1.0×',
    ],
    [
      'new mTLS connections/s',
      m.connectionsPerSec.scangate,
      m.connectionsPerSec.stunnel,
      ratio(m.connectionsPerSec.scangate, m.connectionsPerSec.stunnel),
      '≥ 1.0×',
    ],
    [
      'message round trips/s (1 KB, pipelined)',
      m.messagesPerSec.scangate,
      m.messagesPerSec.stunnelRawFrames,
      ratio(m.messagesPerSec.scangate, m.messagesPerSec.stunnelRawFrames),
      '≥ 50,000/s',
    ],
  ];
  console.log(
    `\nmTLS tunnel: scangate vs stunnel4 (server mode), same certificates and CRL, loopback; median of ${ROUNDS} rounds of ${SECONDS} s after an untimed warm-up`,
  );
  console.log(
    `  stream: ${STREAMS} parallel streams; connections: ${CONNECTORS} parallel dialers, full handshakes (no resumption)`,
  );
  console.log(`  negotiated: scangate ${agreed.scangate}; stunnel4 ${agreed.stunnel}`);
  console.log(
    `  messages: one connection, ${WINDOW} requests in flight; stunnel column = same frames without MAC through its byte tunnel\n`,
  );
  console.log(
    `${'figure'.padEnd(42)}${'scangate'.padStart(12)}${'stunnel4'.padStart(12)}${'ratio'.padStart(8)}  bar`,
  );
  for (const [name, a, b, x, bar] of rows)
    console.log(
      `${String(name).padEnd(42)}${String(a).padStart(12)}${String(b).padStart(12)}${`${x}×`.padStart(8)}  ${bar}`,
    );
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(
    join(ROOT, 'bench/results/tunnel.json'),
    `${JSON.stringify({ date: new Date().toISOString(), seconds: SECONDS, rounds: ROUNDS, streams: STREAMS, connectors: CONNECTORS, window: WINDOW, negotiated: agreed, medians: m, raw: r }, null, 2)}\n`,
  );
  pki.dir.cleanup();
}

try {
  await main();
} finally {
  for (const c of children) c.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1500));
  for (const c of children) c.kill('SIGKILL');
}
process.exit(0);
