/**
 * `workers: 2`: a client resumes its TLS session on whichever worker its next connection reaches, on
 * the HTTPS gateway's client leg and on the mTLS tunnel. The primary deals connections out
 * round-robin, so consecutive connections alternate between the workers; before the workers shared
 * their ticket keys, every other resumption was refused and became a full handshake. The client is
 * Debian's `openssl s_client`, saving the session of the first connection and offering it after.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { type CliProcess, freePort, startCli, writeConfig } from '../helpers/ops-cli.js';
import { startTestOrigin } from '../helpers/ops-https.js';
import { type IssuedCert, tunnelPki } from '../helpers/tunnel-pki.js';

const CONNECTIONS = 6;
let dir: string;
let cli: CliProcess | undefined;
let origin: Awaited<ReturnType<typeof startTestOrigin>>;
let echo: Server;
let pki: Awaited<ReturnType<typeof tunnelPki>>;
let client: IssuedCert;
let proxyPort: number;
let tunnelPort: number;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-resume-'));
  origin = await startTestOrigin(dir, (_req, res) => res.end('hello'));
  echo = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  pki = await tunnelPki();
  client = await pki.ca.issue({ commonName: 'resuming-client' });
  proxyPort = await freePort();
  tunnelPort = await freePort();
  const tlsBlock = `{ cert: ${pki.files.cert}, key: ${pki.files.key}, clientCa: ${pki.files.clientCa}, crl: ${pki.files.crl}, watch: false }`;
  const config = writeConfig(dir, [
    `dataDir: ${join(dir, 'data')}`,
    'log: { level: debug }',
    'workers: 2',
    'admin: null',
    `tls: { upstream: { ca: [${origin.caFile}] } }`,
    'listeners:',
    `  - { name: web, protocol: http, listen: 127.0.0.1:${proxyPort} }`,
    `  - { name: tun, protocol: tunnel, mode: stream, listen: 127.0.0.1:${tunnelPort}, upstream: 127.0.0.1:${(echo.address() as AddressInfo).port}, tls: ${tlsBlock}, allow: { cn: [resuming-client] } }`,
  ]);
  cli = startCli(config);
  await cli.waitFor(/scangate: 2 workers/);
});

after(async () => {
  cli?.kill();
  await origin?.close();
  echo?.close();
  pki?.dir.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * One `openssl s_client` connection that sends `request` and waits for `expect` in the answer: the
 * first one saves its session to `sessionFile`, the later ones offer it. Returns whether the
 * session was resumed ("Reused") or a full handshake was made ("New").
 */
function sClient(args: string[], request: string, expect: string, sessionFile: string, first: boolean) {
  return new Promise<'Reused' | 'New'>((resolve, reject) => {
    const child = spawn('openssl', [
      's_client',
      ...args,
      '-servername',
      'localhost',
      '-verify_return_error',
      first ? '-sess_out' : '-sess_in',
      sessionFile,
    ]);
    let out = '';
    const timer = setTimeout(() => child.kill(), 15_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      // The answer came after the server's TLS 1.3 tickets: the session file is written; done.
      if (out.includes(expect)) child.stdin.end();
    });
    child.stdin.write(request);
    child.once('error', reject);
    child.once('close', () => {
      clearTimeout(timer);
      const how = /^(New|Reused),/m.exec(out)?.[1];
      if (how && out.includes(expect)) resolve(how as 'Reused' | 'New');
      else reject(new Error(`s_client did not get its answer:\n${out.slice(-500)}`));
    });
  });
}

async function resumptions(args: string[], request: string, expect: string): Promise<string[]> {
  const sessionFile = join(dir, `session-${Math.random().toString(36).slice(2)}.pem`);
  assert.equal(await sClient(args, request, expect, sessionFile, true), 'New');
  const seen: string[] = [];
  for (let i = 0; i < CONNECTIONS; i++) seen.push(await sClient(args, request, expect, sessionFile, false));
  return seen;
}

function workersThatLogged(re: RegExp): Set<string> {
  const ids = new Set<string>();
  for (const l of cli!.lines) if (re.test(l)) ids.add(/"worker":"(\d+)"/.exec(l)?.[1] ?? '?');
  return ids;
}

it(
  'the tunnel: every connection after the first resumes, on both workers',
  { timeout: 120_000 },
  async () => {
    const files = [pki.dir.write('client.crt', client.certPem), pki.dir.write('client.key', client.keyPem)];
    const args = ['-connect', `127.0.0.1:${tunnelPort}`, '-CAfile', pki.files.clientCa];
    const seen = await resumptions([...args, '-cert', files[0]!, '-key', files[1]!], 'ping\n', 'ping');
    assert.deepEqual(seen, Array(CONNECTIONS).fill('Reused'));
    assert.equal(workersThatLogged(/tunnel client authenticated/).size, 2, 'both workers took connections');
  },
);

it(
  'the HTTPS gateway: every connection after the first resumes, on both workers',
  { timeout: 120_000 },
  async () => {
    const args = [
      '-proxy',
      `127.0.0.1:${proxyPort}`,
      '-connect',
      `localhost:${origin.port}`,
      '-CAfile',
      join(dir, 'data', 'ca.crt'),
    ];
    const seen = await resumptions(args, 'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n', 'hello');
    assert.deepEqual(seen, Array(CONNECTIONS).fill('Reused'));
  },
);
