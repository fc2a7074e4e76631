/**
 * The clamd daemon's request parser, sans-IO (issue 8, done-when 6): any z/n command sequence with
 * INSTREAM data, split anywhere, gives the same events; streams reassemble byte for byte; the
 * StreamMaxLength quota is exact; garbage never throws and nothing follows a closing event. Requests
 * are built with the clamd client backend's own framing helpers, so both ends share one format.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { chunkHeader, END_OF_STREAM } from '../../src/engine/backends/clamd-protocol.js';
import {
  CLAMD_COMMANDS,
  type ClamdEvent,
  ClamdParser,
  parseCommandText,
} from '../../src/protocols/clamd/parser.js';
import {
  ctime,
  reply,
  statsText,
  verdictText,
  versionCommandsText,
  versionText,
} from '../../src/protocols/clamd/replies.js';

const b = (s: string) => Buffer.from(s, 'latin1');

/** Feeds the pieces and renders events as strings, adjacent chunks merged. */
function run(pieces: Buffer[], streamMaxLength = 1 << 20): string[] {
  const p = new ClamdParser({ streamMaxLength, maxCommandLength: 1024 });
  const out: string[] = [];
  let data = '';
  const flush = () => {
    if (data) out.push(`data:${data}`);
    data = '';
  };
  for (const piece of pieces) {
    for (const ev of p.push(piece)) {
      if (ev.kind === 'chunk') {
        data += ev.data.toString('latin1');
        continue;
      }
      flush();
      out.push(render(ev));
    }
  }
  flush();
  return out;
}

function render(ev: Exclude<ClamdEvent, { kind: 'chunk' }>): string {
  switch (ev.kind) {
    case 'command':
      return `cmd:${ev.name}:${ev.arg ?? ''}:${ev.term === '\0' ? 'z' : 'n'}${ev.legacy ? ':legacy' : ''}`;
    case 'unknown':
      return `unknown:${ev.term === '\0' ? 'z' : 'n'}`;
    case 'stream-limit':
      return 'stream-limit';
    default:
      return ev.kind;
  }
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    out.push(buf.subarray(last, p));
    last = p;
  }
  out.push(buf.subarray(last));
  return out;
}

function instream(prefix: 'z' | 'n', chunks: Buffer[]): Buffer {
  return Buffer.concat([
    b(`${prefix}INSTREAM${prefix === 'z' ? '\0' : '\n'}`),
    ...chunks.flatMap((c) => [chunkHeader(c.length), c]),
    END_OF_STREAM,
  ]);
}

const pathArb = fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !/[\0\n\r]/.test(s));
const requestArb = fc.oneof(
  fc.constantFrom('PING', 'VERSION', 'VERSIONCOMMANDS', 'STATS', 'IDSESSION', 'END', 'RELOAD'),
  fc
    .tuple(fc.constantFrom('SCAN', 'CONTSCAN', 'MULTISCAN', 'ALLMATCHSCAN'), pathArb)
    .map(([c, p]) => `${c} ${p}`),
  fc
    .array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 4 })
    .map((cs) => cs.map((c) => Buffer.from(c))),
);

test('property: any z/n request sequence split anywhere gives the same events', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.constantFrom('z', 'n') as fc.Arbitrary<'z' | 'n'>, requestArb), {
        minLength: 1,
        maxLength: 8,
      }),
      fc.array(fc.nat(), { maxLength: 12 }),
      (reqs, cuts) => {
        const whole = Buffer.concat(
          reqs.map(([pre, r]) =>
            typeof r === 'string' ? b(`${pre}${r}${pre === 'z' ? '\0' : '\n'}`) : instream(pre, r),
          ),
        );
        const once = run([whole]);
        assert.deepEqual(run(splitAt(whole, cuts)), once);
        assert.deepEqual(run([...whole].map((x) => Buffer.from([x]))), once);
        // And the events say what was sent: commands in order, each stream's bytes whole.
        const expected: string[] = [];
        for (const [pre, r] of reqs) {
          if (typeof r === 'string') {
            const [name, ...rest] = r.split(' ');
            expected.push(`cmd:${name}:${rest.join(' ')}:${pre}`);
          } else {
            expected.push(`cmd:INSTREAM::${pre}`);
            const data = Buffer.concat(r).toString('latin1');
            if (data) expected.push(`data:${data}`);
            expected.push('stream-end');
          }
        }
        assert.deepEqual(once, expected);
      },
    ),
    { numRuns: 300 },
  );
});

test('property: the StreamMaxLength quota is exact (a stream of exactly the limit passes)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 10 }),
      fc.integer({ min: 1, max: 300 }),
      (sizes, limit) => {
        const chunks = sizes.map((n) => Buffer.alloc(n, 0x61));
        const events = run([instream('z', chunks)], limit);
        let used = 0;
        let cut = -1;
        sizes.forEach((n, i) => {
          if (cut < 0 && used + n > limit) cut = i;
          else if (cut < 0) used += n;
        });
        if (cut < 0) assert.equal(events.at(-1), 'stream-end');
        else {
          assert.equal(events.at(-1), 'stream-limit');
          const data = events.find((e) => e.startsWith('data:'));
          assert.equal(data ? data.length - 5 : 0, used);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('property: garbage never throws and nothing follows a closing event', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 10 }), (pieces) => {
      const p = new ClamdParser({ streamMaxLength: 1000, maxCommandLength: 64 });
      let closed = false;
      for (const piece of pieces) {
        for (const ev of p.push(Buffer.from(piece))) {
          assert.equal(closed, false, 'event after a closing event');
          if (ev.kind === 'unknown' || ev.kind === 'stream-limit' || ev.kind === 'too-long') closed = true;
        }
      }
      assert.equal(p.closed, closed);
    }),
    { numRuns: 500 },
  );
});

test('property: every table command with any argument reads back as sent', () => {
  fc.assert(
    fc.property(fc.constantFrom(...CLAMD_COMMANDS), pathArb, (name, arg) => {
      const needs = ['SCAN', 'CONTSCAN', 'MULTISCAN', 'ALLMATCHSCAN'].includes(name);
      const parsed = parseCommandText(needs ? `${name} ${arg}` : name, false);
      assert.deepEqual(parsed, { name, arg: needs ? arg : null });
      // Missing or extra argument: unknown, as session.c parse_command says.
      assert.equal(parseCommandText(needs ? name : `${name} ${arg}`, false), null);
    }),
  );
});

test("clamd's framing quirks: legacy commands, CR, prefix-only commands, over-long commands", () => {
  assert.deepEqual(run([b('PING')]), ['cmd:PING::n:legacy']);
  assert.deepEqual(run([b('PING\r\n')]), ['cmd:PING::n:legacy']);
  assert.deepEqual(run([b('nPING\r\n')]), ['cmd:PING::n']);
  assert.deepEqual(run([b('SCAN /tmp/x')]), ['cmd:SCAN:/tmp/x:n:legacy']);
  // session.c support_old = false: these need z/n.
  for (const c of ['VERSIONCOMMANDS', 'IDSESSION', 'INSTREAM', 'END', 'ALLMATCHSCAN /x'])
    assert.deepEqual(run([b(`${c}\n`)]), ['unknown:n'], c);
  // A z command keeps a LF inside its argument (clamd does not chomp z commands).
  assert.deepEqual(run([b('zSCAN /a\n\0')]), ['cmd:SCAN:/a\n:z']);
  assert.deepEqual(run([b('zPING extra\0')]), ['unknown:z']);
  assert.deepEqual(run([b('zFOO\0zPING\0')]), ['unknown:z']);
  assert.deepEqual(run([b(`zSCAN /${'a'.repeat(2000)}`)]), ['too-long']);
  assert.deepEqual(run([b(`zSCAN /${'a'.repeat(2000)}\0`)]), ['too-long']);
  // A partial chunk header waits; a partial chunk is delivered as it comes.
  assert.deepEqual(run([b('zINSTREAM\0'), Buffer.from([0, 0]), Buffer.from([0, 3, 0x61])]), [
    'cmd:INSTREAM::z',
    'data:a',
  ]);
});

test('reply texts are byte-identical to clamd 1.4 (session.c, thrmgr.c)', () => {
  assert.equal(reply({ id: 0, term: '\0' }, 'PONG').toString('latin1'), 'PONG\0');
  assert.equal(reply({ id: 3, term: '\n' }, 'stream: OK').toString('latin1'), '3: stream: OK\n');
  assert.equal(
    verdictText('stream', { status: 'infected', signature: 'Eicar-Signature', location: [] }),
    'stream: Eicar-Signature FOUND',
  );
  assert.equal(verdictText('/x', { status: 'clean' }), '/x: OK');
  assert.equal(verdictText('/x', { status: 'error', reason: 'boom' }), '/x: boom ERROR');
  const when = new Date(Date.UTC(2026, 10, 3, 9, 5, 7));
  assert.equal(ctime(when), 'Tue Nov  3 09:05:07 2026');
  assert.equal(versionText({ engine: '1.4.6', dbVersion: 0, dbTime: null }), 'ClamAV 1.4.6');
  assert.equal(
    versionText({ engine: '1.4.6', dbVersion: 27000, dbTime: when }),
    'ClamAV 1.4.6/27000/Tue Nov  3 09:05:07 2026',
  );
  assert.equal(
    versionCommandsText({ engine: '1.4.6', dbVersion: 0, dbTime: null }),
    'ClamAV 1.4.6| COMMANDS: SCAN QUIT RELOAD PING CONTSCAN VERSIONCOMMANDS VERSION END SHUTDOWN MULTISCAN FILDES STATS IDSESSION INSTREAM DETSTATSCLEAR DETSTATS ALLMATCHSCAN',
  );
  const stats = statsText({
    live: 1,
    idle: 9,
    max: 10,
    queued: 0,
    scans: 5,
    cacheHits: 2,
    cacheMisses: 5,
    connections: 1,
  });
  assert.match(
    stats,
    /^POOLS: 1\n\nSTATE: VALID PRIMARY\nTHREADS: live 1 {2}idle 9 max 10 idle-timeout 30\n/,
  );
  assert.match(stats, /\nSCANGATE: scans 5 cache-hits 2 cache-misses 5 connections 1\nEND$/);
});
