/**
 * SMTP gateway benchmark (issue 4, done-when 6), measured in one run on loopback:
 *   messages/s for 100 KB messages carrying a clean attachment, N parallel connections, sent
 *   directly to a mail server and through `scangate run` (smtp listener, every message spooled and
 *   scanned by the builtin engine) to the same server; the ratio is the figure. scangate's RSS is
 *   sampled through the run: its peak and its growth from the first to the last third say whether
 *   memory stays flat. Results go to bench/results/smtp.json.
 *
 * The client is a minimal lockstep SMTP client (MAIL, RCPT, DATA, content, "."), identical for both
 * paths, so the ratio measures the relay and its scanning, not a client library.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { which } from '../test/helpers/peers.js';
import { benchMail } from './lib/bench-mail.js';
import { postfixUnavailable, startPostfix } from './lib/smtp-postfix.js';

const ROOT = join(import.meta.dirname, '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** scangate's `workers` setting (node:cluster processes): 1, N or auto. */
const WORKERS = process.env.BENCH_SMTP_WORKERS ?? '1';
const CONNECTIONS = Number(process.env.BENCH_SMTP_CONNECTIONS ?? 10);
const MESSAGE_KB = Number(process.env.BENCH_SMTP_KB ?? 100);
const children: ChildProcess[] = [];
/** Stops what is not a child process of ours (Postfix's master daemonizes). */
const cleanups: (() => void)[] = [];

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
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

interface Body {
  template: Buffer;
  /** Where a per-message serial is written into the attachment's base64 (so no two are alike). */
  serialAt: number;
  unique: boolean;
}

let serial = 0;
function nextBody(b: Body): Buffer {
  if (!b.unique) return b.template;
  const copy = Buffer.from(b.template);
  copy.write((serial++).toString(36).padStart(12, '0'), b.serialAt, 'latin1');
  return copy;
}

/** A ~MESSAGE_KB message (bench/lib/bench-mail.ts) with the DATA terminator. */
function message(unique: boolean): Body {
  const { template, serialAt } = benchMail(MESSAGE_KB);
  return { template: Buffer.concat([template, Buffer.from('.\r\n')]), serialAt, unique };
}

/**
 * One connection sending messages back to back until `until`; returns how many were accepted.
 * `pipelined`: MAIL, RCPT and DATA go out in one write (RFC 2920, as Postfix's smtp client and
 * other MTAs send them); otherwise each command waits for its reply (lockstep).
 */
function sender(port: number, body: Body, until: number, pipelined: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    let buf = '';
    let sent = 0;
    /** Replies still expected, in order, with what to do when each arrives. */
    const expect: { code: number; counts?: boolean; onReply: () => boolean }[] = [];
    const envelope = ['MAIL FROM:<bench@example.org>\r\n', 'RCPT TO:<rcpt@example.net>\r\n', 'DATA\r\n'];
    const content = () => {
      s.write(nextBody(body));
      expect.push({ code: 250, counts: true, onReply: startMessage });
      return true;
    };
    const startMessage = (): boolean => {
      if (Date.now() >= until) {
        s.end('QUIT\r\n');
        resolve(sent);
        return false;
      }
      if (pipelined) {
        s.write(envelope.join(''));
        expect.push(
          { code: 250, onReply: () => true },
          { code: 250, onReply: () => true },
          { code: 354, onReply: content },
        );
      } else {
        s.write(envelope[0]!);
        expect.push({
          code: 250,
          onReply: () => {
            s.write(envelope[1]!);
            expect.push({
              code: 250,
              onReply: () => {
                s.write(envelope[2]!);
                expect.push({ code: 354, onReply: content });
                return true;
              },
            });
            return true;
          },
        });
      }
      return true;
    };
    expect.push({
      code: 220,
      onReply: () => {
        s.write('EHLO bench.example.org\r\n');
        expect.push({ code: 250, onReply: startMessage });
        return true;
      },
    });
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const i = buf.indexOf('\r\n');
        if (i < 0) return;
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (line[3] === '-') continue;
        const want = expect.shift();
        if (!want || Number(line.slice(0, 3)) !== want.code) {
          s.destroy();
          reject(new Error(`unexpected reply ${JSON.stringify(line)} (expected ${want?.code})`));
          return;
        }
        if (want.counts) sent++;
        if (!want.onReply()) return;
      }
    });
    s.on('error', reject);
  });
}

interface Phase {
  msgs: number;
  seconds: number;
  /** CPU seconds used during the phase by: this process (the client), the mail server, scangate. */
  cpu: { client: number; server: number; scangate: number };
}

const TICK = 100; // USER_HZ: /proc/PID/stat counts CPU time in 1/100 s

/** The process and its descendants (scangate's cluster workers), from /proc. */
function tree(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      parent.set(Number(e), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // exited meanwhile
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++)
    for (const [child, ppid] of parent) if (ppid === out[i]) out.push(child);
  return out;
}

/** CPU seconds (user + system) used so far by `pid` and its descendants. */
function cpuOf(pid: number | undefined): number {
  if (!pid) return 0;
  let total = 0;
  for (const p of tree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(f[11]) + Number(f[12])) / TICK;
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

function selfCpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

async function phase(
  port: number,
  body: Body,
  pipelined: boolean,
  serverPid: number,
  scangatePid?: number,
): Promise<Phase> {
  const before = { client: selfCpu(), server: cpuOf(serverPid), scangate: cpuOf(scangatePid) };
  const started = Date.now();
  const until = started + SECONDS * 1000;
  const counts = await Promise.all(
    Array.from({ length: CONNECTIONS }, () => sender(port, body, until, pipelined)),
  );
  const seconds = (Date.now() - started) / 1000;
  return {
    msgs: counts.reduce((a, b) => a + b, 0),
    seconds,
    cpu: {
      client: selfCpu() - before.client,
      server: cpuOf(serverPid) - before.server,
      scangate: cpuOf(scangatePid) - before.scangate,
    },
  };
}

/** Resident memory of `pid` and its descendants. */
function rssOf(pid: number): number {
  let total = 0;
  for (const p of tree(pid)) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      total += m ? Number(m[1]) * 1024 : 0;
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const round = (n: number, places = 1) => Math.round(n * 10 ** places) / 10 ** places;

interface Scenario {
  server: 'memory' | 'durable' | 'postfix';
  content: 'unique' | 'repeated';
  client: 'pipelined' | 'lockstep';
}

interface Row extends Scenario {
  rounds: number;
  /** Medians over the rounds. */
  directMsgPerSec: number;
  scangateMsgPerSec: number;
  ratio: number;
  ratios: number[];
  /** CPU milliseconds per message (medians): scangate, and client + server on each path. */
  cpuMsPerMsg: { scangate: number; directClientServer: number; throughClientServer: number };
  scangatePeakRssMB: number;
  scangateRssEarlyMB: number;
  scangateRssLateMB: number;
}

async function startScangate(
  dir: string,
  name: string,
  upstreamPort: number,
): Promise<{ port: number; proc: ChildProcess }> {
  const port = await freePort();
  const data = join(dir, `data-${name}`);
  mkdirSync(data);
  const cfg = join(dir, `scangate-${name}.yaml`);
  writeFileSync(
    cfg,
    [
      `dataDir: ${data}`,
      'log: { level: warn }',
      `workers: ${WORKERS}`,
      `listeners: [{ name: mail, protocol: smtp, listen: 127.0.0.1:${port}, upstream: 127.0.0.1:${upstreamPort}, tls: { client: none, upstream: none } }]`,
      'admin: null',
    ].join('\n'),
  );
  const prof = process.env.BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_PROF] : [];
  const proc = start(process.execPath, [...prof, join(ROOT, 'bin/scangate.js'), 'run', '-c', cfg], {
    SCANGATE_FROM_SOURCE: '1',
  });
  proc.stderr!.on('data', (d) => process.env.BENCH_VERBOSE && process.stderr.write(d));
  await waitPort(port);
  return { port, proc };
}

/** SIGTERM and wait for the exit (a cluster primary drains its workers first). */
async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
}

/** BENCH_SMTP_ONLY=memory/repeated/pipelined,…: run only those rows (profiling one path). */
const ONLY = process.env.BENCH_SMTP_ONLY?.split(',');

async function measure(
  scenario: Scenario,
  sink: { port: number; pid: number },
  sg: { port: number; proc: ChildProcess },
): Promise<Row | null> {
  if (ONLY && !ONLY.includes(`${scenario.server}/${scenario.content}/${scenario.client}`)) return null;
  const body = message(scenario.content === 'unique');
  const pipelined = scenario.client === 'pipelined';
  const samples: number[] = [];
  const direct: Phase[] = [];
  const through: Phase[] = [];
  // Alternating rounds, so a burst of load from elsewhere on the machine hits both paths alike.
  for (let i = 0; i < ROUNDS; i++) {
    direct.push(await phase(sink.port, body, pipelined, sink.pid));
    const sampler = setInterval(() => samples.push(rssOf(sg.proc.pid!)), 200);
    through.push(await phase(sg.port, body, pipelined, sink.pid, sg.proc.pid));
    clearInterval(sampler);
    samples.push(rssOf(sg.proc.pid!));
  }
  const third = Math.max(1, Math.floor(samples.length / 3));
  const avg = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  const mb = (n: number) => Math.round(n / 1048576);
  const rate = (p: Phase) => p.msgs / p.seconds;
  const perMsg = (p: Phase, cpu: number) => (p.msgs ? (cpu / p.msgs) * 1000 : 0);
  const ratios = direct.map((d, i) => rate(through[i]!) / rate(d));
  return {
    ...scenario,
    rounds: ROUNDS,
    directMsgPerSec: round(median(direct.map(rate))),
    scangateMsgPerSec: round(median(through.map(rate))),
    ratio: round(median(ratios), 3),
    ratios: ratios.map((r) => round(r, 3)),
    cpuMsPerMsg: {
      scangate: round(median(through.map((p) => perMsg(p, p.cpu.scangate))), 3),
      directClientServer: round(median(direct.map((p) => perMsg(p, p.cpu.client + p.cpu.server))), 3),
      throughClientServer: round(median(through.map((p) => perMsg(p, p.cpu.client + p.cpu.server))), 3),
    },
    scangatePeakRssMB: mb(Math.max(...samples)),
    scangateRssEarlyMB: mb(avg(samples.slice(0, third))),
    scangateRssLateMB: mb(avg(samples.slice(-third))),
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'scangate-bench-smtp-'));
  try {
    const queue = join(dir, 'queue');
    mkdirSync(queue);
    const memorySink = start(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/lib/smtp-sink.ts')]);
    const durableSink = start(process.execPath, [
      '--import',
      'tsx',
      join(ROOT, 'bench/lib/smtp-sink.ts'),
      'durable',
      queue,
    ]);
    const { port: memPort } = await firstJsonLine<{ port: number }>(memorySink);
    const { port: durPort } = await firstJsonLine<{ port: number }>(durableSink);

    const mem = { port: memPort, pid: memorySink.pid! };
    const dur = { port: durPort, pid: durableSink.pid! };
    const warm = (port: number, pid: number) => phase(port, message(true), true, pid);

    const rows: (Row | null)[] = [];
    const sgMem = await startScangate(dir, 'mem', memPort);
    // Warm-up: JIT, the engine's first scans, the spool folder.
    await warm(sgMem.port, mem.pid);
    await warm(memPort, mem.pid);
    rows.push(await measure({ server: 'memory', content: 'unique', client: 'pipelined' }, mem, sgMem));
    rows.push(await measure({ server: 'memory', content: 'unique', client: 'lockstep' }, mem, sgMem));
    rows.push(await measure({ server: 'memory', content: 'repeated', client: 'pipelined' }, mem, sgMem));
    await stop(sgMem.proc);
    const sgDur = await startScangate(dir, 'dur', durPort);
    await warm(sgDur.port, dur.pid);
    await warm(durPort, dur.pid);
    rows.push(await measure({ server: 'durable', content: 'unique', client: 'pipelined' }, dur, sgDur));
    await stop(sgDur.proc);

    // The MTA a gateway really fronts: a private Postfix (smtpd, cleanup with fsync, qmgr, discard).
    const postfixSkipped = postfixUnavailable(which('postfix'));
    if (postfixSkipped === null) {
      const pf = await startPostfix(which('postfix')!, await freePort());
      cleanups.push(pf.stop);
      await waitPort(pf.port);
      const mta = { port: pf.port, pid: pf.pid };
      const sgPf = await startScangate(dir, 'postfix', pf.port);
      await warm(sgPf.port, mta.pid);
      await warm(pf.port, mta.pid);
      rows.push(await measure({ server: 'postfix', content: 'unique', client: 'pipelined' }, mta, sgPf));
      rows.push(await measure({ server: 'postfix', content: 'unique', client: 'lockstep' }, mta, sgPf));
      await stop(sgPf.proc);
      pf.stop();
    }

    const bytes = message(true).template.length;
    console.log(
      `\nSMTP gateway: msgs/s for ${Math.round(bytes / 1024)} KB messages with a clean attachment, ${CONNECTIONS} connections, plain both legs, builtin engine, scangate workers: ${WORKERS}; median of ${ROUNDS} alternating rounds of ${SECONDS} s per path`,
    );
    console.log(
      `  ${'server / content / client'.padEnd(32)} ${'direct'.padStart(8)} ${'scangate'.padStart(9)} ${'ratio'.padStart(6)}  ${'CPU ms/msg: scangate'.padStart(20)} ${'client+server direct/through'.padStart(29)}   RSS peak (early → late) MB`,
    );
    for (const r of rows) {
      if (!r) continue;
      console.log(
        `  ${`${r.server} / ${r.content} / ${r.client}`.padEnd(32)} ${String(r.directMsgPerSec).padStart(8)} ${String(r.scangateMsgPerSec).padStart(9)} ${r.ratio.toFixed(3).padStart(6)}  ${r.cpuMsPerMsg.scangate.toFixed(3).padStart(20)} ${`${r.cpuMsPerMsg.directClientServer.toFixed(3)} / ${r.cpuMsPerMsg.throughClientServer.toFixed(3)}`.padStart(29)}   ${r.scangatePeakRssMB} (${r.scangateRssEarlyMB} → ${r.scangateRssLateMB})`,
      );
    }
    console.log(
      '  memory: a server that only counts bytes; durable: fsync per message before its 250, as an MTA queue',
    );
    console.log(
      `  postfix: a private Postfix 3 (smtpd, cleanup, qmgr, discard transport)${postfixSkipped ? ` — skipped: ${postfixSkipped}` : ''}`,
    );
    console.log(
      '  unique: every message differs (full scan each); repeated: same bytes (verdict cache hit): relay overhead only',
    );
    console.log(
      '  pipelined: MAIL, RCPT, DATA in one write (RFC 2920, as MTAs send); lockstep: each command waits for its reply',
    );
    console.log('  bar: ratio >= 0.5, goal 0.8');
    const result = {
      messageBytes: bytes,
      connections: CONNECTIONS,
      seconds: SECONDS,
      rounds: ROUNDS,
      workers: WORKERS,
      bar: 0.5,
      goal: 0.8,
      rows: rows.filter((r) => r !== null),
      cpus: os.cpus().length,
      node: process.version,
    };
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/smtp.json'), `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    for (const f of cleanups) f();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    for (const c of children) c.kill('SIGKILL');
    for (const f of cleanups) f();
    process.exit(1);
  },
);
