/**
 * scangate's clamd listener against hostile and busy clients (issue 8, done-when 6) and its session
 * semantics: garbage gets UNKNOWN COMMAND, a never-ending INSTREAM gets the StreamMaxLength error,
 * 1,000 idle connections each get COMMAND READ TIMED OUT while other clients are served, IDSESSION
 * ids and END, RELOAD swapping the database under a scan in flight, and the unix socket mode.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chunkHeader, END_OF_STREAM } from '../../src/engine/backends/clamd-protocol.js';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { BuiltinScanner } from '../../src/engine/scanner.js';
import { exchange, type ScangateClamd, startScangateClamd } from '../helpers/clamd-daemon.js';
import { EICAR } from '../helpers/eicar.js';

let dir: string;
let db: string;
let scanner: BuiltinScanner;
let daemon: ScangateClamd;

const z = (s: string) => Buffer.from(`z${s}\0`, 'latin1');
const instream = (...chunks: Buffer[]) =>
  Buffer.concat([z('INSTREAM'), ...chunks.flatMap((c) => [chunkHeader(c.length), c]), END_OF_STREAM]);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sg-clamd-int-'));
  db = join(dir, 'local.ndb');
  writeFileSync(db, 'Test.Before.Reload:0:*:6265666f72652d72656c6f6164\n'); // "before-reload"
  scanner = await createBuiltinScanner({ signatures: [db] });
  daemon = await startScangateClamd(
    scanner,
    {
      listen: '127.0.0.1:0',
      streamMaxLength: '1MB',
      headerTimeout: '1500ms',
      readTimeout: '3s',
      maxScans: 4,
    },
    { engine: { signatures: [db] } },
  );
});

after(async () => {
  await daemon?.service.close(0);
  rmSync(dir, { recursive: true, force: true });
});

test('PING, VERSION, STATS and INSTREAM answer in clamd formats and close', async () => {
  assert.equal((await exchange(daemon.address, z('PING'))).toString(), 'PONG\0');
  assert.equal((await exchange(daemon.address, Buffer.from('nPING\n'))).toString(), 'PONG\n');
  assert.match((await exchange(daemon.address, z('VERSION'))).toString(), /^ClamAV scangate-[\d.]+\0$/);
  const stats = (await exchange(daemon.address, z('STATS'))).toString();
  assert.match(stats, /^POOLS: 1\n\nSTATE: VALID PRIMARY\n.*\nSCANGATE: scans \d+ .*\nEND\0$/s);
  assert.equal(
    (await exchange(daemon.address, instream(EICAR.subarray(0, 10), EICAR.subarray(10)))).toString(),
    'stream: Eicar-Signature FOUND\0',
  );
  assert.equal((await exchange(daemon.address, instream(Buffer.from('hello')))).toString(), 'stream: OK\0');
  assert.equal((await exchange(daemon.address, instream())).toString(), 'stream: OK\0');
  const ev = daemon.events.events.find((e) => e.signature === 'Eicar-Signature');
  assert.equal(ev?.protocol, 'clamd');
  assert.equal(ev?.object, 'stream');
});

test('garbage, unknown and unavailable commands get their documented replies', async () => {
  for (const [req, want] of [
    [Buffer.from('garbage\n'), 'UNKNOWN COMMAND\n'],
    [z('FOO'), 'UNKNOWN COMMAND\0'],
    [z('PING extra'), 'UNKNOWN COMMAND\0'],
    [z('END'), 'UNKNOWN COMMAND\0'],
    [Buffer.from('\x00\x01\x02\xff\n'), 'UNKNOWN COMMAND\n'],
    [z('SHUTDOWN'), 'COMMAND UNAVAILABLE\0'],
    [z('FILDES'), 'COMMAND UNAVAILABLE\0'],
    [Buffer.concat([z('IDSESSION'), z('CONTSCAN /tmp')]), '1: Command invalid inside IDSESSION. ERROR\0'],
  ] as const) {
    assert.equal(
      (await exchange(daemon.address, req)).toString('latin1'),
      want,
      JSON.stringify(req.toString()),
    );
  }
  // An over-long command is dropped without a reply, as clamd does when its buffer fills.
  assert.equal((await exchange(daemon.address, Buffer.from(`zSCAN /${'a'.repeat(20_000)}`))).length, 0);
});

test('a never-ending INSTREAM gets "INSTREAM size limit exceeded. ERROR" and is cut off', async () => {
  const reply = await new Promise<string>((resolve) => {
    const s = net.connect(Number(daemon.address.split(':')[1]), '127.0.0.1');
    const got: Buffer[] = [];
    let sent = 0;
    const chunk = Buffer.concat([chunkHeader(64 * 1024), Buffer.alloc(64 * 1024, 0x41)]);
    s.on('data', (d) => got.push(d));
    s.on('error', () => {});
    s.on('close', () => resolve(Buffer.concat(got).toString()));
    s.on('connect', () => {
      s.write(z('INSTREAM'));
      // Bounded: 64 MB at most, far past the 1 MB limit.
      const pump = () => {
        while (!s.destroyed && sent < 1024) {
          sent++;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
      };
      pump();
    });
  });
  assert.equal(reply, 'INSTREAM size limit exceeded. ERROR\0');
});

test('1,000 idle connections time out with COMMAND READ TIMED OUT; other clients are served meanwhile', async () => {
  // Its own daemon, with a command timeout long enough that "meanwhile" holds on a loaded machine.
  const own = await startScangateClamd(scanner, {
    listen: '127.0.0.1:0',
    headerTimeout: '5s',
    readTimeout: '3s',
  });
  try {
    const port = Number(own.address.split(':')[1]);
    const idle = await Promise.all(
      Array.from(
        { length: 1000 },
        () =>
          new Promise<{ socket: net.Socket; reply: Promise<string> }>((resolve, reject) => {
            const s = net.connect(port, '127.0.0.1');
            const got: Buffer[] = [];
            s.on('data', (d) => got.push(d));
            const reply = new Promise<string>((r) => s.on('close', () => r(Buffer.concat(got).toString())));
            s.once('error', reject);
            s.once('connect', () => resolve({ socket: s, reply }));
          }),
      ),
    );
    // While the 1,000 are open and silent, a busy client still gets every answer.
    let servedWhileAllOpen = 0;
    for (let i = 0; i < 20; i++) {
      assert.equal((await exchange(own.address, z('PING'))).toString(), 'PONG\0');
      assert.equal(
        (await exchange(own.address, instream(Buffer.from(`clean ${i}`)))).toString(),
        'stream: OK\0',
      );
      if (idle.every((c) => !c.socket.destroyed)) servedWhileAllOpen++;
    }
    const replies = await Promise.all(idle.map((c) => c.reply));
    assert.ok(servedWhileAllOpen > 0, 'no request was answered while the idle connections were open');
    assert.deepEqual(new Set(replies), new Set(['COMMAND READ TIMED OUT\n']));
    // A stream that stops sending mid-chunk also times out (ReadTimeout).
    const stalled = await exchange(own.address, [z('INSTREAM'), chunkHeader(100), Buffer.from('x')]);
    assert.equal(stalled.toString(), 'COMMAND READ TIMED OUT\n');
  } finally {
    await own.service.close(0);
  }
});

test('IDSESSION: numbered replies, concurrent scans, END closes after the last reply', async () => {
  const req = Buffer.concat([
    z('IDSESSION'),
    z('PING'),
    instream(EICAR),
    instream(Buffer.from('fine')),
    Buffer.from('nVERSION\n'),
    z('SCAN /no/such/path'),
    z('END'),
  ]);
  const out = (await exchange(daemon.address, req)).toString('latin1');
  const replies = out.split(/(?<=[\0\n])/).filter(Boolean);
  assert.deepEqual(
    new Set(replies.map((r) => r.replace(/ClamAV [^\n]*/, 'ClamAV')).sort()),
    new Set([
      '1: PONG\0',
      '2: stream: Eicar-Signature FOUND\0',
      '3: stream: OK\0',
      '4: ClamAV\n',
      '5: /no/such/path: File path check failure: No such file or directory. ERROR\0',
    ]),
  );
  // An unprefixed command inside a session is refused and ends it.
  assert.match(
    (await exchange(daemon.address, [z('IDSESSION'), Buffer.from('PING\n')])).toString(),
    /^1: Only new-line terminated nCMDS or NULL-terminated zCMDS are accepted inside IDSESSION\. ERROR\n$/,
  );
});

test('RELOAD swaps the database: a scan in flight finishes, new signatures apply, the cache is dropped', async () => {
  const sample = Buffer.from('xx after-reload yy');
  assert.equal((await exchange(daemon.address, instream(sample))).toString(), 'stream: OK\0');
  // A stream started before the reload and finished after it.
  const port = Number(daemon.address.split(':')[1]);
  const inflight = net.connect(port, '127.0.0.1');
  const got: Buffer[] = [];
  inflight.on('data', (d) => got.push(d));
  const closed = new Promise((r) => inflight.on('close', r));
  await new Promise((r) => inflight.once('connect', r));
  inflight.write(Buffer.concat([z('INSTREAM'), chunkHeader(EICAR.length), EICAR]));

  writeFileSync(db, 'Test.After.Reload:0:*:61667465722d72656c6f6164\n'); // "after-reload"
  const before = scanner.version().databaseVersion;
  assert.equal((await exchange(daemon.address, z('RELOAD'))).toString(), 'RELOADING\0');
  for (let i = 0; i < 100 && scanner.version().databaseVersion === before; i++)
    await new Promise((r) => setTimeout(r, 50));
  assert.notEqual(scanner.version().databaseVersion, before);

  inflight.write(END_OF_STREAM);
  await closed;
  assert.equal(Buffer.concat(got).toString(), 'stream: Eicar-Signature FOUND\0');
  assert.equal(
    (await exchange(daemon.address, instream(sample))).toString(),
    'stream: Test.After.Reload FOUND\0',
  );
});

test('a unix socket listener with socketMode, and SCAN through it', async () => {
  const sock = join(dir, 'run', 'clamd.sock');
  const unix = await startScangateClamd(scanner, { listen: sock, socketMode: '660', name: 'unix' });
  try {
    assert.equal(statSync(sock).mode & 0o777, 0o660);
    const f = join(dir, 'eicar.com');
    writeFileSync(f, EICAR);
    assert.equal((await exchange(sock, z(`SCAN ${f}`))).toString(), `${f}: Eicar-Signature FOUND\0`);
    assert.equal((await exchange(sock, z(`CONTSCAN ${dir}`))).toString(), `${f}: Eicar-Signature FOUND\0`);
  } finally {
    await unix.service.close(0);
  }
});

test('through the gateway (as scangate run starts it): STATS sees the engine behind the metering wrapper; reload applies', async () => {
  const { startGateway } = await import('../../src/gateway.js');
  const { configSchema } = await import('../../src/config/schema.js');
  const { silentLogger } = await import('../../src/logger.js');
  const sock = join(dir, 'gw', 'clamd.sock');
  const config = configSchema.parse({
    dataDir: join(dir, 'gw-data'),
    admin: null,
    engine: { signatures: [db] },
    listeners: [{ name: 'scand', protocol: 'clamd', listen: sock }],
  });
  const gw = await startGateway(config, silentLogger, { admin: false });
  try {
    assert.equal((await exchange(sock, instream(EICAR))).toString(), 'stream: Eicar-Signature FOUND\0');
    assert.equal((await exchange(sock, instream(EICAR))).toString(), 'stream: Eicar-Signature FOUND\0');
    assert.match((await exchange(sock, z('STATS'))).toString(), /\nSCANGATE: scans 1 cache-hits 1 /);
    writeFileSync(db, 'Test.Gateway.Reload:0:*:67772d72656c6f6164\n'); // "gw-reload"
    await gw.reload();
    assert.equal(
      (await exchange(sock, instream(Buffer.from('xx gw-reload')))).toString(),
      'stream: Test.Gateway.Reload FOUND\0',
    );
  } finally {
    await gw.close(0);
  }
});
