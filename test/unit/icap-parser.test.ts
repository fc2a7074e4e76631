/**
 * The sans-IO ICAP request parser (issue 8, done-when 6) against RFC 3507 and hostile input:
 * Encapsulated layouts, previews with and without ieof, pipelined requests, and the refusals
 * (400/501/505) for what is malformed. fast-check properties: any valid message, split anywhere,
 * gives the same events as in one piece and carries exactly the body that was sent; garbage and
 * mutated messages never throw and never yield events after an error.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { formatEncapsulated, parseEncapsulated } from '../../src/protocols/icap/encapsulated.js';
import type { IcapEvent } from '../../src/protocols/icap/messages.js';
import { IcapParser } from '../../src/protocols/icap/parser.js';
import { buildRequest, type RequestSpec } from '../helpers/icap.js';

const b = (s: string) => Buffer.from(s, 'latin1');

/** Feeds `pieces` and returns a transcript; a preview-end is answered as `decision` says. */
function transcript(
  pieces: Buffer[],
  opts: { end?: boolean; decision?: 'continue' | 'abandon'; maxHeaderSize?: number } = {},
): string[] {
  const p = new IcapParser({ maxHeaderSize: opts.maxHeaderSize });
  const out: string[] = [];
  let body = '';
  const flush = () => {
    if (body) out.push(`body:${body}`);
    body = '';
  };
  const take = (ev: IcapEvent) => {
    if (ev.type === 'body') {
      assert.ok(ev.data.length > 0, 'no empty body events');
      body += ev.data.toString('latin1');
      return;
    }
    flush();
    if (ev.type === 'request') {
      const r = ev.request;
      out.push(
        `request:${r.method} ${r.service} body=${r.body} preview=${r.preview} allow204=${r.allow204} ` +
          `req=${r.reqHdr?.raw.toString('latin1') ?? '-'} res=${r.resHdr?.raw.toString('latin1') ?? '-'}`,
      );
    } else if (ev.type === 'preview-end') {
      out.push('preview-end');
      if (opts.decision === 'abandon') p.abandonBody();
      else p.continueBody();
    } else if (ev.type === 'end') out.push(`end${ev.ieof ? ':ieof' : ''}`);
    else out.push(`error:${ev.error.code}:${ev.error.status}`);
  };
  pieces.forEach((piece, i) => {
    p.push(piece);
    if (opts.end && i === pieces.length - 1) p.pushEnd();
    for (let e = p.next(); e; e = p.next()) take(e);
  });
  if (pieces.length === 0 && opts.end) {
    p.pushEnd();
    for (let e = p.next(); e; e = p.next()) take(e);
  }
  flush();
  const err = out.findIndex((l) => l.startsWith('error:'));
  assert.ok(err < 0 || err === out.length - 1, `nothing after an error: ${out.join(' | ')}`);
  return out;
}

/** With the input ended, the parser must have finished: an error, a complete message, or nothing. */
function assertSettled(t: string[]): void {
  const last = t[t.length - 1];
  assert.ok(last === undefined || last.startsWith('error:') || last.startsWith('end'), t.join(' | '));
}

function split(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let last = 0;
  for (const c of points) {
    out.push(buf.subarray(last, c));
    last = c;
  }
  out.push(buf.subarray(last));
  return out.filter((x) => x.length > 0);
}

const RES_HEAD = 'HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 5\r\n\r\n';
const REQ_HEAD = 'GET /file.bin HTTP/1.1\r\nHost: origin.test\r\n\r\n';

describe('ICAP parser: RFC 3507 messages', () => {
  it('OPTIONS without Encapsulated is a bodyless request', () => {
    const t = transcript([b('OPTIONS icap://h:1344/avscan ICAP/1.0\r\nHost: h\r\n\r\n')]);
    assert.deepEqual(t, ['request:OPTIONS avscan body=null preview=null allow204=false req=- res=-', 'end']);
  });

  it('RESPMOD with both heads, a chunked body and Allow: 204', () => {
    const req = buildRequest({ reqHead: REQ_HEAD, resHead: RES_HEAD, body: b('hello'), allow204: true });
    const t = transcript([req.first]);
    assert.deepEqual(t, [
      `request:RESPMOD avscan body=res-body preview=null allow204=true req=${REQ_HEAD} res=${RES_HEAD}`,
      'body:hello',
      'end',
    ]);
  });

  it('a preview holding the whole body ends with ieof and needs no decision', () => {
    const req = buildRequest({ resHead: RES_HEAD, body: b('hello'), preview: 10 });
    assert.equal(req.rest.length, 0);
    assert.deepEqual(transcript([req.first]).slice(1), ['body:hello', 'end:ieof']);
  });

  it('a preview without ieof waits; continueBody() reads the rest, abandonBody() the next request', () => {
    const req = buildRequest({ resHead: RES_HEAD, body: b('hello world'), preview: 4 });
    const p = new IcapParser();
    const evs = p.feed(req.first);
    assert.deepEqual(
      evs.map((e) => e.type),
      ['request', 'body', 'preview-end'],
    );
    assert.equal(p.awaitingPreviewDecision, true);
    assert.equal(p.feed(req.rest).length, 0, 'nothing until the decision');
    p.continueBody();
    const rest = p.feed(Buffer.alloc(0));
    assert.deepEqual(
      rest.map((e) => (e.type === 'body' ? e.data.toString() : e.type)),
      ['o world', 'end'],
    );
    const q = new IcapParser();
    q.feed(req.first);
    q.abandonBody();
    const next = q.feed(b('OPTIONS icap://h/avscan ICAP/1.0\r\n\r\n'));
    assert.equal(next[0]?.type, 'request');
  });

  it('pipelined requests come out in order', () => {
    const one = buildRequest({ resHead: RES_HEAD, body: b('a') }).first;
    const two = buildRequest({ method: 'REQMOD', reqHead: REQ_HEAD, body: null }).first;
    const t = transcript([Buffer.concat([one, two, b('\r\n'), one])]);
    assert.deepEqual(
      t.map((l) => l.split(' ')[0]),
      ['request:RESPMOD', 'body:a', 'end', 'request:REQMOD', 'end', 'request:RESPMOD', 'body:a', 'end'],
    );
  });

  it('chunk extensions other than ieof and a trailer section are accepted', () => {
    const head = buildRequest({ resHead: RES_HEAD, body: null }).first.toString('latin1');
    const msg = head
      .replace('null-body=', 'res-body=')
      .concat('3;name="v"\r\nabc\r\n0; ieof\r\nX-Trailer: 1\r\n\r\n');
    assert.deepEqual(transcript([b(msg)]).slice(1), ['body:abc', 'end:ieof']);
  });

  it('keeps the service name, dropping slashes and query arguments', () => {
    const t = transcript([b('OPTIONS icap://h:1344//respmod/?allow204=on ICAP/1.0\r\n\r\n')]);
    assert.match(t[0]!, /^request:OPTIONS respmod /);
    assert.match(transcript([b('OPTIONS /reqmod ICAP/1.0\r\n\r\n')])[0]!, /^request:OPTIONS reqmod /);
  });
});

describe('ICAP parser: refusals', () => {
  const cases: Array<[string, string, string]> = [
    [
      'no Encapsulated on RESPMOD',
      'RESPMOD icap://h/avscan ICAP/1.0\r\nHost: h\r\n\r\n',
      'ERR_ICAP_ENCAPSULATED:400',
    ],
    ['ICAP/2.0', 'OPTIONS icap://h/avscan ICAP/2.0\r\n\r\n', 'ERR_ICAP_VERSION:505'],
    ['HTTP, not ICAP', 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', 'ERR_ICAP_BAD_REQUEST_LINE:400'],
    ['unknown method', 'LOG icap://h/avscan ICAP/1.0\r\n\r\n', 'ERR_ICAP_METHOD:501'],
    ['bad URI', 'OPTIONS http://h/x ICAP/1.0\r\n\r\n', 'ERR_ICAP_BAD_URI:400'],
    ['two spaces', 'OPTIONS  icap://h/x ICAP/1.0\r\n\r\n', 'ERR_ICAP_BAD_REQUEST_LINE:400'],
    ['obs-fold', 'OPTIONS icap://h/x ICAP/1.0\r\nA: b\r\n c\r\n\r\n', 'ERR_ICAP_BAD_HEADER:400'],
    ['space before colon', 'OPTIONS icap://h/x ICAP/1.0\r\nA : b\r\n\r\n', 'ERR_ICAP_BAD_HEADER:400'],
    [
      'two Encapsulated',
      'REQMOD icap://h/x ICAP/1.0\r\nEncapsulated: null-body=0\r\nEncapsulated: null-body=0\r\n\r\n',
      'ERR_ICAP_ENCAPSULATED:400',
    ],
    [
      'res-hdr in REQMOD',
      'REQMOD icap://h/x ICAP/1.0\r\nEncapsulated: res-hdr=0, null-body=40\r\n\r\n',
      'ERR_ICAP_ENCAPSULATED:400',
    ],
    [
      'heads out of order',
      'RESPMOD icap://h/x ICAP/1.0\r\nEncapsulated: res-hdr=0, req-hdr=20, null-body=40\r\n\r\n',
      'ERR_ICAP_ENCAPSULATED:400',
    ],
    [
      'first offset not 0',
      'RESPMOD icap://h/x ICAP/1.0\r\nEncapsulated: res-hdr=5, null-body=40\r\n\r\n',
      'ERR_ICAP_ENCAPSULATED:400',
    ],
    [
      'no body entity last',
      'RESPMOD icap://h/x ICAP/1.0\r\nEncapsulated: res-hdr=0\r\n\r\n',
      'ERR_ICAP_ENCAPSULATED:400',
    ],
    [
      'garbage offset',
      'RESPMOD icap://h/x ICAP/1.0\r\nEncapsulated: res-hdr=x\r\n\r\n',
      'ERR_ICAP_ENCAPSULATED:400',
    ],
    [
      'bad Preview',
      'RESPMOD icap://h/x ICAP/1.0\r\nPreview: -1\r\nEncapsulated: res-body=0\r\n\r\n',
      'ERR_ICAP_PREVIEW:400',
    ],
    ['binary', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03', 'ERR_ICAP_BAD_REQUEST_LINE:400'],
  ];
  for (const [name, input, code] of cases) {
    it(name, () => {
      const t = transcript([b(input)]);
      assert.equal(t[t.length - 1], `error:${code}`, t.join(' | '));
    });
  }

  it('an encapsulated head that does not end at the next offset', () => {
    const head = `${RES_HEAD}`;
    const msg = `RESPMOD icap://h/x ICAP/1.0\r\nEncapsulated: res-hdr=0, null-body=${head.length + 3}\r\n\r\n${head}abc`;
    assert.equal(transcript([b(msg)]).pop(), 'error:ERR_ICAP_ENCAPSULATED:400');
  });

  it('an encapsulated head that is not HTTP', () => {
    const junk = 'NOT HTTP AT ALL\r\n\r\n';
    const msg = `RESPMOD icap://h/x ICAP/1.0\r\nEncapsulated: res-hdr=0, null-body=${junk.length}\r\n\r\n${junk}`;
    assert.equal(transcript([b(msg)]).pop(), 'error:ERR_ICAP_ENCAPSULATED:400');
  });

  it('heads and encapsulated sections beyond maxHeaderSize', () => {
    const big = `OPTIONS icap://h/x ICAP/1.0\r\nX: ${'a'.repeat(2000)}\r\n\r\n`;
    assert.equal(transcript([b(big)], { maxHeaderSize: 1024 }).pop(), 'error:ERR_ICAP_HEADER_TOO_LARGE:400');
    const endless = `OPTIONS icap://h/x ICAP/1.0\r\nX: ${'a'.repeat(2000)}`;
    assert.equal(
      transcript([b(endless)], { maxHeaderSize: 1024 }).pop(),
      'error:ERR_ICAP_HEADER_TOO_LARGE:400',
    );
    const sections = 'RESPMOD icap://h/x ICAP/1.0\r\nEncapsulated: res-hdr=0, null-body=999999\r\n\r\n';
    assert.equal(
      transcript([b(sections)], { maxHeaderSize: 1024 }).pop(),
      'error:ERR_ICAP_HEADER_TOO_LARGE:400',
    );
  });

  it('bad chunk framing', () => {
    const head = buildRequest({ resHead: RES_HEAD, body: b('x') }).first.toString('latin1');
    const prefix = head.slice(0, head.lastIndexOf(RES_HEAD) + RES_HEAD.length);
    for (const body of [
      'zz\r\n',
      '3\r\nabcX',
      `${'f'.repeat(13)}\r\n`,
      '1;bad ext\r\n',
      `1;${'a'.repeat(5000)}`,
    ]) {
      assert.equal(transcript([b(prefix + body)]).pop(), 'error:ERR_ICAP_BAD_CHUNK:400', body);
    }
  });

  it('a connection closed mid-message is a truncation, not a request', () => {
    const req = buildRequest({ resHead: RES_HEAD, body: b('hello') }).first;
    for (const cut of [5, 60, req.length - 3]) {
      const t = transcript([req.subarray(0, cut)], { end: true });
      assert.equal(t.pop(), 'error:ERR_ICAP_TRUNCATED:400');
    }
    assert.deepEqual(transcript([], { end: true }), []);
  });
});

const token = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/);
const headerValue = fc.stringMatching(/^[\x21-\x7e][\x20-\x7e]{0,30}[\x21-\x7e]$/);
const httpFields = fc.array(fc.tuple(token, headerValue), { maxLength: 5 });
const specArb: fc.Arbitrary<RequestSpec> = fc
  .record({
    method: fc.constantFrom('RESPMOD', 'REQMOD'),
    service: token,
    withReq: fc.boolean(),
    reqFields: httpFields,
    resFields: httpFields,
    status: fc.integer({ min: 200, max: 599 }),
    body: fc.option(fc.uint8Array({ maxLength: 3000 }), { nil: null }),
    chunkSizes: fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 4 }),
    preview: fc.option(fc.integer({ min: 0, max: 3200 }), { nil: undefined }),
    allow204: fc.boolean(),
  })
  .map((r) => {
    const fields = (f: [string, string][]) => f.map(([n, v]) => `${n}: ${v}\r\n`).join('');
    const reqHead = `POST /u/${r.service} HTTP/1.1\r\nHost: origin.test\r\n${fields(r.reqFields)}\r\n`;
    const resHead = `HTTP/1.1 ${r.status} Whatever\r\n${fields(r.resFields)}\r\n`;
    return {
      method: r.method,
      service: r.service,
      reqHead: r.method === 'REQMOD' || r.withReq ? reqHead : undefined,
      resHead: r.method === 'RESPMOD' ? resHead : undefined,
      body: r.body ? Buffer.from(r.body) : null,
      chunkSizes: r.chunkSizes,
      preview: r.preview,
      allow204: r.allow204,
    };
  });

/** What the parser must report for `spec`, built from the spec alone. */
function expected(spec: RequestSpec): string[] {
  const body = spec.body ?? null;
  const preview = body && spec.preview !== undefined ? spec.preview : null;
  const out = [
    `request:${spec.method} ${spec.service} body=${body ? (spec.method === 'REQMOD' ? 'req-body' : 'res-body') : null} ` +
      `preview=${preview} allow204=${spec.allow204} req=${spec.reqHead ?? '-'} res=${spec.resHead ?? '-'}`,
  ];
  if (!body) return [...out, 'end'];
  if (preview === null) return [...out, ...(body.length ? [`body:${body.toString('latin1')}`] : []), 'end'];
  const pv = body.subarray(0, preview).toString('latin1');
  if (body.length <= preview) return [...out, ...(pv ? [`body:${pv}`] : []), 'end:ieof'];
  return [
    ...out,
    ...(pv ? [`body:${pv}`] : []),
    'preview-end',
    `body:${body.subarray(preview).toString('latin1')}`,
    'end',
  ];
}

describe('ICAP parser: properties', () => {
  it('any valid message, split anywhere, gives exactly its heads and body', () => {
    fc.assert(
      fc.property(specArb, fc.array(fc.nat(), { maxLength: 12 }), (spec, cuts) => {
        const req = buildRequest(spec);
        const whole = Buffer.concat([req.first, req.rest]);
        const want = expected(spec);
        assert.deepEqual(transcript([whole]), want);
        assert.deepEqual(transcript(split(whole, cuts)), want);
      }),
      { numRuns: 300 },
    );
  });

  it('two pipelined messages parse as the two, whatever the split', () => {
    fc.assert(
      fc.property(specArb, specArb, fc.array(fc.nat(), { maxLength: 8 }), (s1, s2, cuts) => {
        const r1 = buildRequest(s1);
        const r2 = buildRequest(s2);
        const whole = Buffer.concat([r1.first, r1.rest, r2.first, r2.rest]);
        assert.deepEqual(transcript(split(whole, cuts)), [...expected(s1), ...expected(s2)]);
      }),
      { numRuns: 100 },
    );
  });

  it('an abandoned preview goes straight to the next request', () => {
    fc.assert(
      fc.property(specArb, (spec) => {
        const r = buildRequest({ ...spec, preview: 0, body: Buffer.from('0123456789') });
        const t = transcript([r.first, b('OPTIONS icap://h/avscan ICAP/1.0\r\n\r\n')], {
          decision: 'abandon',
        });
        assert.equal(t[t.length - 1], 'end');
        assert.match(t[t.length - 2]!, /^request:OPTIONS/);
      }),
      { numRuns: 50 },
    );
  });

  it('garbage never throws and, once the input ends, settles in an error or a complete message', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.nat(), { maxLength: 6 }), (bytes, cuts) => {
        assertSettled(transcript(split(Buffer.from(bytes), cuts), { end: true, maxHeaderSize: 512 }));
      }),
      { numRuns: 500 },
    );
  });

  it('ICAP-shaped garbage (shuffled protocol tokens) never throws and settles', () => {
    const pieces = [
      'RESPMOD',
      'REQMOD',
      'OPTIONS',
      ' ',
      'icap://h/avscan',
      '/respmod',
      'ICAP/1.0',
      '\r\n',
      '\r\n\r\n',
      'Encapsulated: ',
      'req-hdr=0',
      'res-hdr=',
      ', ',
      'res-body=',
      'null-body=',
      '0',
      '1',
      '17',
      '4096',
      'Preview: ',
      'Allow: 204',
      '0; ieof',
      '3\r\nabc',
      'HTTP/1.1 200 OK',
      'GET / HTTP/1.1',
      'Host: x',
      ':',
      ';',
    ];
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...pieces), { maxLength: 60 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (words, cuts) => {
          assertSettled(transcript(split(b(words.join('')), cuts), { end: true, maxHeaderSize: 512 }));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('mutated and truncated valid messages never throw', () => {
    fc.assert(
      fc.property(
        specArb,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        (spec, edits, cut) => {
          const r = buildRequest(spec);
          const m = Buffer.concat([r.first, r.rest]);
          for (const [at, v] of edits) m[at % m.length] = v;
          const t = transcript([m.subarray(0, cut % (m.length + 1))], { end: true });
          assertSettled(t);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('Encapsulated values round-trip through format and parse', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('REQMOD', 'RESPMOD'),
        fc.integer({ min: 4, max: 5000 }),
        fc.integer({ min: 4, max: 5000 }),
        fc.boolean(),
        (method, l1, l2, withBody) => {
          const heads =
            method === 'REQMOD'
              ? [{ name: 'req-hdr' as const, length: l1 }]
              : [
                  { name: 'req-hdr' as const, length: l1 },
                  { name: 'res-hdr' as const, length: l2 },
                ];
          const body = withBody ? (method === 'REQMOD' ? 'req-body' : 'res-body') : 'null-body';
          const parsed = parseEncapsulated(formatEncapsulated(heads, body), method);
          assert.ok(!('error' in parsed));
          assert.equal(parsed.body, withBody ? body : null);
          assert.equal(
            parsed.headBytes,
            heads.reduce((s, h) => s + h.length, 0),
          );
          assert.deepEqual(
            parsed.heads.map((h) => [h.name, h.end - h.start]),
            heads.map((h) => [h.name, h.length]),
          );
        },
      ),
    );
  });

  it('a head fed one byte at a time parses like one piece', () => {
    const req = buildRequest({
      reqHead: `GET / HTTP/1.1\r\nHost: x\r\n${'X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n'.repeat(300)}\r\n`,
      resHead: RES_HEAD,
      body: b('abc'),
    }).first;
    const bytes = [...req].map((x) => Buffer.from([x]));
    assert.deepEqual(transcript(bytes), transcript([req]));
  });
});
