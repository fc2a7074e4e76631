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
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const ROOT = join(import.meta.dirname, '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONNECTIONS = Number(process.env.BENCH_SMTP_CONNECTIONS ?? 10);
const MESSAGE_KB = Number(process.env.BENCH_SMTP_KB ?? 100);
const children: ChildProcess[] = [];

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

/** A ~MESSAGE_KB message: a text part and a random (clean) base64 attachment, CRLF, dot-safe. */
function message(unique: boolean): Body {
  const raw = randomBytes(Math.floor(((MESSAGE_KB * 1024 - 600) * 3) / 4));
  const b64 = raw.toString('base64').replace(/.{1,76}/g, '$&\r\n');
  const template = Buffer.from(
    [
      'From: bench@example.org',
      'To: rcpt@example.net',
      'Subject: scangate smtp bench',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="bnd"',
      '',
      '--bnd',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'The quarterly figures are attached.',
      '--bnd',
      'Content-Type: application/octet-stream; name="figures.bin"',
      'Content-Transfer-Encoding: base64',
      'Content-Disposition: attachment; filename="figures.bin"',
      '',
      `${b64}--bnd--`,
      '.',
      '',
    ].join('\r\n'),
  );
  return { template, serialAt: template.indexOf('filename="figures.bin"') + 28, unique };
}

/** One connection sending messages back to back until `until`; returns how many were accepted. */
function sender(port: number, body: Body, until: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    let buf = '';
    let sent = 0;
    let step = 0;
    const steps = ['greeting', 'EHLO', 'MAIL', 'RCPT', 'DATA', 'END'];
    const next = () => {
      const at = steps[step]!;
      if (at === 'greeting') s.write('EHLO bench.example.org\r\n');
      else if (at === 'EHLO' || at === 'END') {
        if (Date.now() >= until) {
          s.end('QUIT\r\n');
          resolve(sent);
          return false;
        }
        s.write('MAIL FROM:<bench@example.org>\r\n');
        step = 1;
      } else if (at === 'MAIL') s.write('RCPT TO:<rcpt@example.net>\r\n');
      else if (at === 'RCPT') s.write('DATA\r\n');
      else if (at === 'DATA') s.write(nextBody(body));
      return true;
    };
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const i = buf.indexOf('\r\n');
        if (i < 0) return;
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (line[3] === '-') continue;
        const code = Number(line.slice(0, 3));
        const expect = steps[step] === 'DATA' ? 354 : steps[step] === 'greeting' ? 220 : 250;
        if (code !== expect) {
          s.destroy();
          reject(new Error(`unexpected reply at ${steps[step]}: ${line}`));
          return;
        }
        if (steps[step] === 'END') sent++;
        if (!next()) return;
        step = Math.min(step + 1, steps.length - 1);
      }
    });
    s.on('error', reject);
  });
}

async function rate(port: number, body: Body): Promise<number> {
  const started = Date.now();
  const until = started + SECONDS * 1000;
  const counts = await Promise.all(Array.from({ length: CONNECTIONS }, () => sender(port, body, until)));
  return counts.reduce((a, b) => a + b, 0) / ((Date.now() - started) / 1000);
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

interface Row {
  server: 'memory' | 'durable';
  content: 'unique' | 'repeated';
  directMsgPerSec: number;
  scangateMsgPerSec: number;
  ratio: number;
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

async function measure(
  server: Row['server'],
  content: Row['content'],
  sinkPort: number,
  sg: { port: number; proc: ChildProcess },
): Promise<Row> {
  const body = message(content === 'unique');
  const direct = await rate(sinkPort, body);
  const samples: number[] = [];
  const sampler = setInterval(() => samples.push(rssOf(sg.proc.pid!)), 200);
  const through = await rate(sg.port, body);
  clearInterval(sampler);
  samples.push(rssOf(sg.proc.pid!));
  const third = Math.max(1, Math.floor(samples.length / 3));
  const avg = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  const mb = (n: number) => Math.round(n / 1048576);
  return {
    server,
    content,
    directMsgPerSec: Math.round(direct * 10) / 10,
    scangateMsgPerSec: Math.round(through * 10) / 10,
    ratio: Math.round((through / direct) * 1000) / 1000,
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

    const rows: Row[] = [];
    const sgMem = await startScangate(dir, 'mem', memPort);
    // Warm-up: JIT, the engine's first scans, the spool folder.
    await rate(sgMem.port, message(true));
    await rate(memPort, message(true));
    rows.push(await measure('memory', 'unique', memPort, sgMem));
    rows.push(await measure('memory', 'repeated', memPort, sgMem));
    sgMem.proc.kill('SIGTERM');
    const sgDur = await startScangate(dir, 'dur', durPort);
    await rate(sgDur.port, message(true));
    rows.push(await measure('durable', 'unique', durPort, sgDur));

    const bytes = message(true).template.length;
    console.log(
      `\nSMTP gateway: msgs/s for ${Math.round(bytes / 1024)} KB messages with a clean attachment, ${CONNECTIONS} connections, ${SECONDS} s each, plain both legs, builtin engine`,
    );
    console.log(
      `  ${'server / content'.padEnd(28)} ${'direct'.padStart(9)} ${'scangate'.padStart(9)} ${'ratio'.padStart(6)}   RSS peak (early → late) MB`,
    );
    for (const r of rows)
      console.log(
        `  ${`${r.server} / ${r.content}`.padEnd(28)} ${String(r.directMsgPerSec).padStart(9)} ${String(r.scangateMsgPerSec).padStart(9)} ${r.ratio.toFixed(3).padStart(6)}   ${r.scangatePeakRssMB} (${r.scangateRssEarlyMB} → ${r.scangateRssLateMB})`,
      );
    console.log(
      '  memory: a server that only counts bytes; durable: fsync per message before its 250, as an MTA queue',
    );
    console.log(
      '  unique: every message differs (full scan each); repeated: same bytes (verdict cache hit): relay overhead only',
    );
    console.log('  bar: ratio >= 0.5, goal 0.8');
    const result = {
      messageBytes: bytes,
      connections: CONNECTIONS,
      seconds: SECONDS,
      bar: 0.5,
      goal: 0.8,
      rows,
      cpus: os.cpus().length,
      node: process.version,
    };
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/smtp.json'), `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    for (const c of children) c.kill('SIGKILL');
    process.exit(1);
  },
);
