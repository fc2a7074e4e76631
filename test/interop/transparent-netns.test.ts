/**
 * Transparent mode end to end, as deployed on a router: curl in one network namespace (the client
 * LAN), scangate and the origin in another (the gateway), joined by a veth pair. In the gateway
 * namespace iptables REDIRECTs every TCP connection arriving from the client side to scangate's
 * transparent listener, which reads the original destination (SO_ORIGINAL_DST), connects there first,
 * and intercepts. The client knows nothing of the proxy: it dials https://origin.test/ (192.0.2.10,
 * an address of the gateway namespace) and trusts the scangate CA.
 *
 * Everything lives inside the two namespaces the test creates (addresses, routes, iptables rules),
 * so nothing is left on the host; deleting the namespaces removes it all. scangate runs as the real
 * CLI (`scangate run -c FILE`) from the sources. Needs root, ip, iptables and curl; skipped
 * otherwise, a failure under CI=true.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { EICAR, EICAR_NAME } from '../helpers/eicar.js';
import { isRoot, requireCapability, which } from '../helpers/peers.js';
import {
  bigStream,
  type CurlResult,
  createTestPki,
  curl,
  type OriginRecord,
  sha256Of,
  splitHead,
} from '../integration/http-origin.js';

const ROOT = join(import.meta.dirname, '..', '..');
const CLIENT_NS = `sg-lan-${process.pid}`;
const GATEWAY_NS = `sg-gw-${process.pid}`;
const ORIGIN = '192.0.2.10'; // TEST-NET-1 (RFC 5737), on the gateway namespace's loopback
const LISTEN_PORT = 18443;
const HOLD_LIMIT = 4 * 1024 * 1024;

let dir: string;
let caFile: string;
let ready = false;
let nsCreated = 0;
const children: ChildProcess[] = [];
const originRequests: OriginRecord[] = [];
const gatewayLog: string[] = [];

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

function inNs(ns: string, ...args: string[]): void {
  ip('netns', 'exec', ns, ...args);
}

/** A child process inside `ns`; resolves once a stdout line satisfies `isReady`. */
function startIn(
  ns: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  onLine: (line: string) => void,
  isReady: (line: string) => boolean,
): Promise<ChildProcess> {
  const c = spawn('ip', ['netns', 'exec', ns, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.push(c);
  return new Promise((resolve, reject) => {
    let stderr = '';
    c.stderr!.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')} not ready: ${stderr}`)), 60_000);
    for (const stream of [c.stdout!, c.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        onLine(line);
        if (isReady(line)) {
          clearTimeout(timer);
          resolve(c);
        }
      });
    }
    c.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${args.join(' ')} exited ${code}: ${stderr}`));
    });
  });
}

/** curl in the client namespace, as any program on the LAN would run it. */
function lanCurl(args: string[], opts: Parameters<typeof curl>[2] = {}) {
  return curl(which('curl')!, args, { ...opts, wrap: ['ip', 'netns', 'exec', CLIENT_NS] });
}

const https = (path: string) => [
  '--cacert',
  caFile,
  '--resolve',
  `origin.test:443:${ORIGIN}`,
  `https://origin.test${path}`,
];

before(async () => {
  if (!isRoot() || !which('ip') || !which('iptables') || !which('curl')) return;
  dir = mkdtempSync(join(tmpdir(), 'sg-transparent-netns-'));
  const pki = await createTestPki(dir);
  const originTls = await pki.server(['origin.test']);
  writeFileSync(join(dir, 'origin.crt'), originTls.cert);
  writeFileSync(join(dir, 'origin.key'), originTls.key);
  writeFileSync(join(dir, 'eicar.com'), EICAR);
  writeFileSync(join(dir, 'clean.txt'), 'nothing to see here\n'.repeat(100));

  // Two namespaces joined by a veth pair created straight into them (the host never sees it).
  ip('netns', 'add', CLIENT_NS);
  nsCreated++;
  ip('netns', 'add', GATEWAY_NS);
  nsCreated++;
  ip('link', 'add', 'lan0', 'netns', CLIENT_NS, 'type', 'veth', 'peer', 'name', 'gw0', 'netns', GATEWAY_NS);
  inNs(CLIENT_NS, 'ip', 'link', 'set', 'lo', 'up');
  inNs(CLIENT_NS, 'ip', 'addr', 'add', '10.199.0.2/30', 'dev', 'lan0');
  inNs(CLIENT_NS, 'ip', 'link', 'set', 'lan0', 'up');
  inNs(CLIENT_NS, 'ip', 'route', 'add', 'default', 'via', '10.199.0.1');
  inNs(GATEWAY_NS, 'ip', 'link', 'set', 'lo', 'up');
  inNs(GATEWAY_NS, 'ip', 'addr', 'add', `${ORIGIN}/32`, 'dev', 'lo');
  inNs(GATEWAY_NS, 'ip', 'addr', 'add', '10.199.0.1/30', 'dev', 'gw0');
  inNs(GATEWAY_NS, 'ip', 'link', 'set', 'gw0', 'up');
  // Every TCP connection from the LAN goes to scangate; its own connections (OUTPUT) are left alone.
  inNs(
    GATEWAY_NS,
    'iptables',
    '-w',
    '5',
    '-t',
    'nat',
    '-A',
    'PREROUTING',
    '-i',
    'gw0',
    '-p',
    'tcp',
    '-j',
    'REDIRECT',
    '--to-ports',
    String(LISTEN_PORT),
  );

  await startIn(
    GATEWAY_NS,
    [process.execPath, '--import', 'tsx', join(ROOT, 'test/interop/transparent-netns-origin.ts')],
    { ADDR: ORIGIN, CERT: join(dir, 'origin.crt'), KEY: join(dir, 'origin.key') },
    (line) => {
      if (line.startsWith('{"request"')) originRequests.push(JSON.parse(line).request);
    },
    (line) => line.includes('"ready"'),
  );

  const config = join(dir, 'scangate.yaml');
  writeFileSync(
    config,
    [
      `dataDir: ${join(dir, 'data')}`,
      `tls: { upstream: { ca: [${pki.caFile}] } }`,
      'listeners:',
      '  - name: lan',
      '    protocol: http',
      '    mode: transparent',
      `    listen: 0.0.0.0:${LISTEN_PORT}`,
      "    allow: ['10.199.0.0/30']",
      `    holdLimit: ${HOLD_LIMIT}`,
      'admin: null',
    ].join('\n'),
  );
  await startIn(
    GATEWAY_NS,
    [process.execPath, join(ROOT, 'bin/scangate.js'), 'run', '-c', config],
    { SCANGATE_FROM_SOURCE: '1' },
    (line) => gatewayLog.push(line),
    (line) => line.includes('listening on'),
  );
  caFile = join(dir, 'data', 'ca.crt');
  ready = true;
});

after(async () => {
  for (const c of children) {
    if (c.exitCode !== null) continue;
    c.kill('SIGTERM');
    await new Promise((r) => {
      const t = setTimeout(() => {
        c.kill('SIGKILL');
        r(null);
      }, 5000);
      c.once('exit', () => {
        clearTimeout(t);
        r(null);
      });
    });
  }
  // Deleting a namespace takes its interfaces, addresses, routes and iptables rules with it.
  if (nsCreated > 1) ip('netns', 'del', GATEWAY_NS);
  if (nsCreated > 0) ip('netns', 'del', CLIENT_NS);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const skipReason = 'needs root, ip, iptables and curl to build the network namespaces';

function requestsTo(path: string): OriginRecord[] {
  return originRequests.filter((r) => r.url === path);
}

describe('transparent HTTPS gateway between two network namespaces (iptables REDIRECT)', () => {
  it('EICAR over HTTPS gets the 403 block page naming the signature, with a block event', async (t) => {
    if (!requireCapability(t, ready, skipReason)) return;
    const r = await lanCurl(['-v', '-D', '-', ...https('/eicar.com')]);
    const res = splitHead(r.stdout);
    assert.equal(res.status, 403, r.stderr);
    assert.match(res.headers, new RegExp(`X-Scangate-Verdict: infected; signature="${EICAR_NAME}"`, 'i'));
    assert.match(res.body.toString(), new RegExp(EICAR_NAME.replace(/\./g, '\\.')));
    assert.equal(res.body.indexOf(EICAR.subarray(0, 20)), -1);
    // The client shook hands with scangate's leaf for the name it dialled, not with the origin.
    assert.match(r.stderr, /subject: .*origin\.test/);
    assert.match(r.stderr, /issuer: .*scangate interception CA/);
    const event = gatewayLog.find((l) => l.includes('"action":"blocked"') && l.includes(EICAR_NAME));
    assert.ok(event, `no block event in the gateway log:\n${gatewayLog.join('\n')}`);
    assert.match(event, new RegExp(`"server":"${ORIGIN.replace(/\./g, '\\.')}:443"`));
    assert.match(event, /"client":"10\.199\.0\.2:\d+"/);
  });

  it('a gzip-encoded EICAR is blocked too', async (t) => {
    if (!requireCapability(t, ready, skipReason)) return;
    const r = await lanCurl(['-D', '-', ...https('/eicar.gz')]);
    assert.equal(splitHead(r.stdout).status, 403, r.stderr);
  });

  it('clean files arrive byte-identical: held (2 MB) and streamed with a held-back tail (20 MB)', async (t) => {
    if (!requireCapability(t, ready, skipReason)) return;
    for (const size of [2 * 1024 * 1024, 20 * 1024 * 1024]) {
      const r = (await lanCurl(['--fail', ...https(`/big?size=${size}`)], {
        sink: (s) => sha256Of(s),
      })) as CurlResult & { sinkResult: string };
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.sinkResult, await sha256Of(bigStream(size)), `${size} bytes differ`);
    }
    const late = await lanCurl(['-D', '-', ...https(`/big?size=${HOLD_LIMIT * 2}&eicar=1`)], {
      sink: async (s) => {
        let n = 0;
        for await (const c of s) n += (c as Buffer).length;
        return n;
      },
    });
    // Streamed, then found infected at the end: the transfer is cut before its last bytes.
    assert.notEqual(late.code, 0);
  });

  it('an EICAR upload (multipart POST) gets 403 and never reaches the origin; a clean one does', async (t) => {
    if (!requireCapability(t, ready, skipReason)) return;
    const before = requestsTo('/upload').length;
    const bad = await lanCurl(['-D', '-', '-F', `file=@${join(dir, 'eicar.com')}`, ...https('/upload')]);
    assert.equal(splitHead(bad.stdout).status, 403, bad.stderr);
    const ok = await lanCurl(['--fail', '-F', `file=@${join(dir, 'clean.txt')}`, ...https('/upload')]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(JSON.parse(ok.stdout.toString()).received > 2000);
    const uploads = requestsTo('/upload').slice(before);
    assert.equal(uploads.length, 1, JSON.stringify(uploads));
    assert.equal(uploads[0]!.containsEicar, false);
  });

  it('plain HTTP on port 80 is intercepted and scanned the same way', async (t) => {
    if (!requireCapability(t, ready, skipReason)) return;
    const bad = await lanCurl(['-D', '-', `http://${ORIGIN}/eicar.com`]);
    assert.equal(splitHead(bad.stdout).status, 403, bad.stderr);
    const ok = await lanCurl(['--fail', `http://${ORIGIN}/clean.txt`]);
    assert.equal(ok.stdout.toString(), 'hello, clean world\n', ok.stderr);
  });

  it('an origin port where nothing listens: the client is reset (TLS: never a handshake; HTTP: no answer)', async (t) => {
    if (!requireCapability(t, ready, skipReason)) return;
    const r = await lanCurl([
      '-v',
      '--cacert',
      caFile,
      '--resolve',
      `origin.test:444:${ORIGIN}`,
      'https://origin.test:444/',
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /reset by peer|Connection reset|SSL_ERROR_SYSCALL|errno 104|Recv failure/i);
    assert.doesNotMatch(r.stderr, /SSL connection using|Server certificate/);
    assert.equal(r.stdout.length, 0);
    const plain = await lanCurl([`http://${ORIGIN}:444/`]);
    assert.notEqual(plain.code, 0);
    // The gateway resets within microseconds when the origin refuses, so curl may see the RST before
    // it has noticed its own connect completing: "Couldn't connect" is the same refusal.
    assert.match(plain.stderr, /reset by peer|Connection reset|Recv failure|errno 104|Couldn't connect/i);
    assert.equal(plain.stdout.length, 0);
  });
});
