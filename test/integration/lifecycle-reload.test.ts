/**
 * Issue 9, "done when" 2: the real CLI process gets SIGHUP, with a new signature file, while 100
 * HTTPS downloads are in flight through it. None of them fails (each arrives whole, byte-identical),
 * new connections opened during the reload are all answered (the listening socket is handed over,
 * never closed), and the next download of the newly signed file is blocked.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { type CliProcess, freePort, startCli, writeConfig } from '../helpers/ops-cli.js';
import { getViaProxy, startTestOrigin } from '../helpers/ops-https.js';

const IN_FLIGHT = Number(process.env.N ?? 100);
const SLOW_SIZE = 128 * 1024;
const SLOW_CHUNKS = 16;
const SLOW_GAP_MS = 250;

let dir: string;
let origin: Awaited<ReturnType<typeof startTestOrigin>>;
let cli: CliProcess | undefined;
let slowStarted = 0;
const marker = `scangate-reload-marker-${randomBytes(8).toString('hex')}`;
const newVirus = Buffer.from(`harmless bytes around ${marker} and more\n`);

/** Distinct content per download, so every one is really scanned rather than answered from the cache. */
function slowBody(n: number): string {
  return createHash('sha512')
    .update(`body ${n}`)
    .digest('hex')
    .repeat(SLOW_SIZE / 128)
    .slice(0, SLOW_SIZE);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-reload-'));
  origin = await startTestOrigin(dir, (req, res) => {
    const url = req.url ?? '/';
    const slow = /^\/slow\/(\d+)$/.exec(url);
    if (slow) {
      slowStarted++;
      const body = Buffer.from(slowBody(Number(slow[1])), 'latin1');
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
      const step = body.length / SLOW_CHUNKS;
      let i = 0;
      const timer = setInterval(() => {
        res.write(body.subarray(i * step, (i + 1) * step));
        if (++i === SLOW_CHUNKS) {
          clearInterval(timer);
          res.end();
        }
      }, SLOW_GAP_MS);
      res.on('close', () => clearInterval(timer));
      return;
    }
    const body = url === '/newvirus.bin' ? newVirus : Buffer.from(`small ${url}\n`);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  });

  writeFileSync(
    join(dir, 'local.ndb'),
    `Unrelated.Test.Sig:0:*:${Buffer.from('never-in-any-download-xyz').toString('hex')}\n`,
  );
});

after(async () => {
  cli?.kill();
  await origin?.close();
  rmSync(dir, { recursive: true, force: true });
});

it(
  `SIGHUP with new signatures during ${IN_FLIGHT} downloads: none fails, the new signature blocks`,
  { timeout: 180_000 },
  async () => {
    const port = await freePort();
    const config = writeConfig(dir, [
      `dataDir: ${join(dir, 'data')}`,
      'log: { level: info }',
      `engine: { signatures: [${join(dir, 'local.ndb')}] }`,
      `tls: { upstream: { ca: [${origin.caFile}] } }`,
      `listeners: [{ name: web, protocol: http, listen: 127.0.0.1:${port}, maxConnections: 1000 }]`,
      'admin: null',
      'events: null',
    ]);
    cli = startCli(config);
    await cli.waitFor(/web \(http\) listening on/);
    const ca = readFileSync(join(dir, 'data', 'ca.crt'), 'utf8');
    const get = (path: string) =>
      getViaProxy({ proxyPort: port, host: 'localhost', port: origin.port, path, ca });

    const before = await get('/newvirus.bin');
    assert.equal(before.status, 200, 'not yet signed: delivered');
    assert.deepEqual(before.body, newVirus);

    const downloads = Array.from({ length: IN_FLIGHT }, (_, n) => get(`/slow/${n}`));
    const until = Date.now() + 60_000;
    while (slowStarted < IN_FLIGHT && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    if (process.env.SCANGATE_TEST_VERBOSE) console.error('started', slowStarted);
    assert.equal(slowStarted, IN_FLIGHT, 'every download reached the origin before the reload');

    // New connections keep being answered while the reload happens.
    let probing = true;
    const probes: Promise<number>[] = [];
    const prober = (async () => {
      for (let i = 0; probing && i < 200; i++) {
        probes.push(
          get(`/probe/${i}`).then(
            (r) => r.status,
            (e: Error) => {
              if (process.env.SCANGATE_TEST_VERBOSE) console.error('probe', i, e.message);
              return 0;
            },
          ),
        );
        await new Promise((r) => setTimeout(r, 25));
      }
    })();

    writeFileSync(
      join(dir, 'local.ndb'),
      `${readFileSync(join(dir, 'local.ndb'), 'utf8')}Reload.Test.Sig:0:*:${Buffer.from(marker).toString('hex')}\n`,
    );
    const reloadedAt = cli.lines.length;
    cli.child.kill('SIGHUP');
    await cli.waitFor(/configuration reloaded/);
    assert.ok(cli.lines.slice(reloadedAt).some((l) => /signatures reloaded/.test(l)));

    const after = await get('/newvirus.bin');
    assert.equal(after.status, 403, 'the next download of the newly signed file is blocked');
    assert.match(after.headers, /X-Scangate-Verdict: infected; signature="Reload\.Test\.Sig"/i);

    const results = await Promise.allSettled(downloads);
    probing = false;
    await prober;
    const failed = results.filter((r) => r.status === 'rejected');
    assert.equal(
      failed.length,
      0,
      `downloads failed: ${failed.map((f) => String((f as PromiseRejectedResult).reason)).slice(0, 3)}`,
    );
    for (const [n, r] of results.entries()) {
      const v = (r as PromiseFulfilledResult<Awaited<(typeof downloads)[number]>>).value;
      assert.equal(v.status, 200, `download ${n}`);
      assert.equal(v.body.toString('latin1'), slowBody(n), `download ${n} arrives whole`);
    }
    const probeStatuses = await Promise.all(probes);
    assert.ok(probeStatuses.length > 0);
    assert.deepEqual(
      probeStatuses.filter((s) => s !== 200),
      [],
      'every connection opened during the reload was served',
    );

    cli.child.kill('SIGTERM');
    assert.equal((await cli.exited).code, 0);
  },
);
