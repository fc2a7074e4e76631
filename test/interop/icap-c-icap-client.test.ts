/**
 * Debian's c-icap-client against scangate's ICAP server (issue 8, done-when 2): OPTIONS as c-icap
 * reads them, 204 for a clean response through RESPMOD (with and without preview), the echo when
 * 204 is not allowed, and the block page naming the signature for EICAR, in RESPMOD and REQMOD.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { MemoryEventSink } from '../../src/admin/events.js';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { RunningService } from '../../src/net/service.js';
import { EICAR, EICAR_NAME } from '../helpers/eicar.js';
import { startTestIcap } from '../helpers/icap.js';
import { peer } from '../helpers/peers.js';

const exec = promisify(execFile);
let dir: string;
let service: RunningService;
let port: number;
const events = new MemoryEventSink();

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sg-icap-client-'));
  ({ service, port } = await startTestIcap({ dataDir: dir, scanner: await createBuiltinScanner(), events }));
  writeFileSync(join(dir, 'clean.bin'), randomBytes(200_000));
  writeFileSync(join(dir, 'eicar.com'), EICAR);
});

after(async () => {
  await service?.close(100);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs c-icap-client; returns its stdout+stderr (it prints headers with -v). */
async function client(t: TestContext, args: string[]): Promise<string | null> {
  const bin = peer(t, 'c-icap-client', 'c-icap');
  if (!bin) return null;
  const { stdout, stderr } = await exec(bin, ['-i', '127.0.0.1', '-p', String(port), '-v', ...args], {
    timeout: 30_000,
  });
  return stdout + stderr;
}

describe('c-icap-client against the ICAP server', () => {
  it('reads the OPTIONS: 204 allowed, preview 1024, keep-alive', async (t) => {
    const out = await client(t, ['-s', 'avscan']);
    if (out === null) return;
    assert.match(out, /ICAP\/1\.0 200 OK/);
    assert.match(out, /Allow 204: Yes/);
    assert.match(out, /Preview: 1024/);
    assert.match(out, /Keep alive: Yes/);
    assert.match(out, /Methods: RESPMOD, REQMOD/);
    assert.match(out, /ISTag: "sg-[0-9a-f]+"/);
  });

  it('a clean response gets 204, with preview and without', async (t) => {
    for (const extra of [[], ['-nopreview'], ['-w', '0']]) {
      const out = await client(t, [
        '-s',
        'avscan',
        '-f',
        join(dir, 'clean.bin'),
        '-resp',
        'http://origin.test/clean.bin',
        ...extra,
      ]);
      if (out === null) return;
      assert.match(out, /ICAP\/1\.0 204 No Content/, extra.join(' '));
      assert.match(out, /No modification needed/);
    }
  });

  it('without Allow: 204 the clean body comes back unchanged', async (t) => {
    const outFile = join(dir, 'echo.bin');
    rmSync(outFile, { force: true });
    const out = await client(t, [
      '-s',
      'respmod',
      '-f',
      join(dir, 'clean.bin'),
      '-resp',
      'http://origin.test/clean.bin',
      '-no204',
      '-o',
      outFile,
    ]);
    if (out === null) return;
    assert.match(out, /ICAP\/1\.0 200 OK/);
    assert.ok(readFileSync(outFile).equals(readFileSync(join(dir, 'clean.bin'))));
  });

  it('EICAR through RESPMOD is replaced by the block page naming the signature', async (t) => {
    const outFile = join(dir, 'blocked.html');
    rmSync(outFile, { force: true });
    const out = await client(t, [
      '-s',
      'avscan',
      '-f',
      join(dir, 'eicar.com'),
      '-resp',
      'http://origin.test/eicar.com',
      '-o',
      outFile,
    ]);
    if (out === null) return;
    assert.match(out, /ICAP\/1\.0 200 OK/);
    assert.match(out, /HTTP\/1\.1 403 Forbidden/);
    assert.match(out, new RegExp(`X-Scangate-Verdict: infected; signature="${EICAR_NAME}"`));
    const page = readFileSync(outFile, 'utf8');
    assert.match(page, new RegExp(`<strong>${EICAR_NAME}</strong>`));
    assert.match(page, /http:\/\/origin\.test\/eicar\.com/);
    assert.ok(events.events.some((e) => e.protocol === 'icap' && e.action === 'blocked'));
  });

  it('EICAR uploaded through REQMOD gets the block page as the response', async (t) => {
    const out = await client(t, [
      '-s',
      'reqmod',
      '-f',
      join(dir, 'eicar.com'),
      '-req',
      'http://origin.test/upload',
      '-method',
      'POST',
    ]);
    if (out === null) return;
    assert.match(out, /HTTP\/1\.1 403 Forbidden/);
    assert.match(out, /Blocked: malware detected/);
  });

  it('an unknown service is 404', async (t) => {
    const out = await client(t, ['-s', 'virus_scan']);
    if (out === null) return;
    assert.match(out, /404/);
  });
});
