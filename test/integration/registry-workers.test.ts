/**
 * The registry under `workers: 2` with the real CLI: the primary serves the registry (page, API),
 * each worker's SMTP policies use its database — inbound forgeries are flagged and outbound mail
 * is stamped whichever worker takes the connection — and SIGTERM closes everything, exit 0.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RegistryClient } from '../../src/registry/client.js';
import { queryOfMail } from '../../src/registry/mailcheck.js';
import { freePort, startCli, writeConfig } from '../helpers/ops-cli.js';
import { peer } from '../helpers/peers.js';
import { enrolOrganisation } from '../helpers/registry.js';
import { swaks } from '../helpers/smtp-gateway.js';
import { startMailServer } from '../helpers/smtp-server.js';

const BANK = 'notices@bank.example';

test(
  'workers: 2 — primary serves the registry, every worker flags forgeries and stamps outbound mail',
  { timeout: 180_000 },
  async (t) => {
    const bin = peer(t, 'swaks');
    if (!bin) return;
    const dir = mkdtempSync(join(tmpdir(), 'scangate-regworkers-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const dataDir = join(dir, 'data');
    const mail = await startMailServer({ tls: 'none' });
    t.after(() => mail.close());

    // Enrol the organisation first, as an operator would.
    await enrolOrganisation({ dataDir, keyDir: dir, mail, address: BANK });

    const [mx, submission, registryPort] = [await freePort(), await freePort(), await freePort()];
    const smtp = (name: string, port: number) =>
      `  - { name: ${name}, protocol: smtp, listen: 127.0.0.1:${port}, upstream: 127.0.0.1:${mail.port}, tls: { client: none, upstream: none } }`;
    const config = writeConfig(dir, [
      `dataDir: ${dataDir}`,
      'log: { level: info }',
      'workers: 2',
      'admin: null',
      'listeners:',
      smtp('mx', mx),
      smtp('submission', submission),
      'registry:',
      `  listen: 127.0.0.1:${registryPort}`,
      `  mail: { smtp: 127.0.0.1:${mail.port}, from: registry@scangate.test, tls: none }`,
      `  gateway: { inbound: [mx], onFail: header, outbound: [submission], organisation: { tokenFile: ${join(dir, 'org.token')}, keyFile: ${join(dir, 'org.pem')} } }`,
    ]);
    const cli = startCli(config);
    t.after(() => cli.kill());
    await cli.waitFor(/scangate: 2 workers/, 120_000);
    await cli.waitFor(/mail registry on http:\/\/127\.0\.0\.1:\d+\//);

    const send = (port: number, args: string[]) =>
      swaks(bin, [
        '--server',
        '127.0.0.1',
        '--port',
        String(port),
        '--to',
        'customer@mail.example',
        '--timeout',
        '30',
        ...args,
      ]);
    // Several connections, so both workers take some (round-robin).
    for (let i = 0; i < 3; i++) {
      const out = await send(submission, [
        '--from',
        BANK,
        '--header',
        `Subject: Statement ${i}`,
        '--body',
        `Statement number ${i}.`,
      ]);
      assert.equal(out.code, 0, out.stdout);
      const forged = await send(mx, [
        '--from',
        BANK,
        '--header',
        'Subject: Verify now',
        '--body',
        `Forged ${i}.`,
      ]);
      assert.equal(forged.code, 0, forged.stdout);
    }
    assert.equal(mail.messages.length, 6);
    const verifier = new RegistryClient(`http://127.0.0.1:${registryPort}`);
    for (let i = 0; i < 3; i++) {
      const stamped = mail.messages[2 * i]?.data ?? Buffer.alloc(0);
      assert.match(stamped.toString(), /^X-Registered: Yes\r$/m);
      assert.equal(
        (await verifier.verify({ ...queryOfMail(stamped) })).verdict,
        'authentic',
        `statement ${i}`,
      );
      assert.match(
        mail.messages[2 * i + 1]?.data.toString() ?? '',
        /^X-Scangate-Phishing: fail; verdict=not-registered\r$/m,
      );
    }
    const pids = new Set(
      cli.lines.filter((l) => l.includes('smtp: message relayed')).map((l) => JSON.parse(l).pid as number),
    );
    assert.equal(pids.size, 2, 'both workers relayed mail');

    cli.child.kill('SIGTERM');
    assert.equal((await cli.exited).code, 0);
  },
);
