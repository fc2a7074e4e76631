/**
 * `workers: 2` with the real CLI: both workers serve the shared listener, /metrics on the primary
 * sums them, a verdict reached by one worker is a cache hit in the other, events from every worker
 * land in the primary's event store, SIGHUP reloads every worker (a new signature blocks on all of
 * them), SIGTERM drains and exits 0.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { EICAR } from '../helpers/eicar.js';
import { type CliProcess, freePort, startCli, writeConfig } from '../helpers/ops-cli.js';
import { getViaProxy, startTestOrigin } from '../helpers/ops-https.js';

const TOKEN = 'workers-test-token-0123456789';
let dir: string;
let origin: Awaited<ReturnType<typeof startTestOrigin>>;
let cli: CliProcess | undefined;
const marker = `scangate-workers-marker-${randomBytes(8).toString('hex')}`;

function metric(text: string, name: string): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
    .reduce((a, l) => a + Number(l.split(' ').pop()), 0);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-workers-'));
  origin = await startTestOrigin(dir, (req, res) => {
    const body =
      req.url === '/eicar.com'
        ? EICAR
        : req.url === '/marked.bin'
          ? Buffer.from(`x ${marker} y`)
          : Buffer.from('same clean body\n');
    res.writeHead(200, { 'content-length': body.length });
    res.end(body);
  });
  writeFileSync(
    join(dir, 'local.ndb'),
    `Unrelated.Sig:0:*:${Buffer.from('nothing-matches-this-123').toString('hex')}\n`,
  );
});

after(async () => {
  cli?.kill();
  await origin?.close();
  rmSync(dir, { recursive: true, force: true });
});

it(
  'two workers share the listener, metrics, verdict cache and event store; SIGHUP and SIGTERM reach both',
  { timeout: 120_000 },
  async () => {
    const port = await freePort();
    const adminPort = await freePort();
    const config = writeConfig(dir, [
      `dataDir: ${join(dir, 'data')}`,
      'log: { level: info }',
      'workers: 2',
      `engine: { signatures: [${join(dir, 'local.ndb')}] }`,
      `tls: { upstream: { ca: [${origin.caFile}] } }`,
      `listeners: [{ name: web, protocol: http, listen: 127.0.0.1:${port} }]`,
      `admin: { listen: 127.0.0.1:${adminPort}, token: ${TOKEN} }`,
    ]);
    cli = startCli(config);
    await cli.waitFor(/scangate: 2 workers/);
    await cli.waitFor(/admin on/);
    const ca = readFileSync(join(dir, 'data', 'ca.crt'), 'utf8');
    let n = 0;
    const get = (path: string) => {
      const i = n++;
      return getViaProxy({ proxyPort: port, host: 'localhost', port: origin.port, path, ca }).catch(
        (e: Error) => {
          throw new Error(`request ${i} (${path}): ${e.message}`);
        },
      );
    };
    const admin = (path: string) =>
      fetch(`http://127.0.0.1:${adminPort}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });

    const CLEAN = 10;
    for (let i = 0; i < CLEAN; i++) assert.equal((await get('/clean')).status, 200);
    for (let i = 0; i < 2; i++) assert.equal((await get('/eicar.com')).status, 403);

    const text = await (await admin('/metrics')).text();
    assert.equal(metric(text, 'scangate_workers'), 2);
    assert.equal(metric(text, 'scangate_connections_total'), CLEAN + 2, 'summed over both workers');
    assert.equal(metric(text, 'scangate_objects_scanned_total'), CLEAN + 2);
    assert.equal(metric(text, 'scangate_verdicts_total'), CLEAN + 2);
    // Round-robin puts consecutive connections on alternate workers: only the very first clean body
    // (and the first EICAR) is scanned; the other worker already has the verdict.
    const hits = metric(text, 'scangate_verdict_cache_hits_total');
    assert.ok(hits >= CLEAN + 2 - 4, `cache hits across workers: ${hits}`);
    const ratio = metric(text, 'scangate_verdict_cache_hit_ratio');
    assert.ok(ratio > 0.5 && ratio <= 1, `hit ratio ${ratio}`);

    const ready = (await (await admin('/readyz')).json()) as { status: string; workers: number };
    assert.equal(ready.status, 'ready');
    assert.equal(ready.workers, 2);

    let events: { signature?: string }[] = [];
    for (let i = 0; i < 50 && events.length < 2; i++) {
      events = ((await (await admin('/api/events?listener=web')).json()) as { events: typeof events }).events;
      if (events.length < 2) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(events.length, 2, 'both workers’ events are in the primary’s store');

    assert.equal((await get('/marked.bin')).status, 200);
    writeFileSync(join(dir, 'local.ndb'), `Workers.Reload.Sig:0:*:${Buffer.from(marker).toString('hex')}\n`, {
      flag: 'a',
    });
    const from = cli.lines.length;
    cli.child.kill('SIGHUP');
    for (
      let i = 0;
      i < 600 && cli.lines.slice(from).filter((l) => /configuration reloaded/.test(l)).length < 2;
      i++
    )
      await new Promise((r) => setTimeout(r, 50));
    assert.equal(
      cli.lines.slice(from).filter((l) => /configuration reloaded/.test(l)).length,
      2,
      'both workers reloaded',
    );
    for (let i = 0; i < 4; i++)
      assert.equal((await get('/marked.bin')).status, 403, `download ${i} after the reload`);

    cli.child.kill('SIGTERM');
    const exit = await cli.exited;
    assert.equal(exit.code, 0);
  },
);
