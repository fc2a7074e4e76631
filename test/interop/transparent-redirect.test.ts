/**
 * Transparent mode with the real kernel: in a private network namespace, iptables REDIRECTs TCP for
 * 127.0.0.2:443 (and [::1]:443 with ip6tables) to our listener; getOriginalDestination must report the
 * address the client dialled. A direct connection to the listener reports null (not redirected).
 * Needs root (namespaces, iptables); skipped otherwise, a failure under CI=true.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isRoot, requireCapability, which } from '../helpers/peers.js';

const NS = `sg-test-${process.pid}`;
const PORT = 18080;
const root = join(import.meta.dirname, '..', '..');
let nsReady = false;

function ns(...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', NS, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

before(() => {
  if (!isRoot() || !which('ip') || !which('iptables')) return;
  execFileSync('ip', ['netns', 'add', NS]);
  nsReady = true;
  ns('ip', 'link', 'set', 'lo', 'up');
  ns(
    'iptables',
    '-t',
    'nat',
    '-A',
    'OUTPUT',
    '-p',
    'tcp',
    '-d',
    '127.0.0.2',
    '--dport',
    '443',
    '-j',
    'REDIRECT',
    '--to-ports',
    String(PORT),
  );
});

after(() => {
  if (nsReady) execFileSync('ip', ['netns', 'del', NS]);
});

function runChild(
  env: Record<string, string>,
): Record<string, { original: { address: string; port: number } | null; local: string }> {
  const out = execFileSync(
    'ip',
    [
      'netns',
      'exec',
      NS,
      process.execPath,
      '--import',
      'tsx',
      join(root, 'test/interop/transparent-redirect-child.ts'),
    ],
    { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 },
  );
  return JSON.parse(out.trim().split('\n').at(-1)!);
}

test('IPv4 REDIRECT: the original destination 127.0.0.2:443 is recovered; a direct dial gives null', (t) => {
  if (!requireCapability(t, isRoot() && nsReady, 'needs root, ip and iptables to build a network namespace'))
    return;
  const r = runChild({ LISTEN: `0.0.0.0:${PORT}`, DIAL: `127.0.0.2:443,127.0.0.1:${PORT}` });
  assert.deepEqual(r['127.0.0.2:443']!.original, { address: '127.0.0.2', port: 443 });
  assert.equal(r[`127.0.0.1:${PORT}`]!.original, null);
});

test('IPv6 REDIRECT: [::1]:443 is recovered through IP6T_SO_ORIGINAL_DST', (t) => {
  if (!requireCapability(t, isRoot() && nsReady && !!which('ip6tables'), 'needs root and ip6tables')) return;
  ns(
    'ip6tables',
    '-t',
    'nat',
    '-A',
    'OUTPUT',
    '-p',
    'tcp',
    '-d',
    '::1',
    '--dport',
    '443',
    '-j',
    'REDIRECT',
    '--to-ports',
    String(PORT),
  );
  const r = runChild({ LISTEN: `[::]:${PORT}`, DIAL: '[::1]:443,127.0.0.2:443' });
  assert.deepEqual(r['[::1]:443']!.original, { address: '::1', port: 443 });
  // An IPv4 client on the dual-stack socket shows as ::ffff:127.0.0.x; its conntrack entry is IPv4.
  assert.deepEqual(r['127.0.0.2:443']!.original, { address: '127.0.0.2', port: 443 });
});
