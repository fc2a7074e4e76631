import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { getHeader, stripHopByHop } from '../../src/protocols/http/headers.js';
import { type HttpEvent, HttpParser } from '../../src/protocols/http/parser.js';
import {
  encodeChunk,
  encodeLastChunk,
  serializeRequestHead,
  serializeResponseHead,
} from '../../src/protocols/http/serialize.js';
import { parseRequestTarget } from '../../src/protocols/http/target.js';

const b = (s: string) => Buffer.from(s, 'latin1');

/** Events with body chunks merged, so different input splits compare equal. */
function normalize(events: HttpEvent[]): unknown[] {
  const out: unknown[] = [];
  for (const e of events) {
    const last = out[out.length - 1] as { type?: string; data?: string } | undefined;
    if (e.type === 'body') {
      if (last?.type === 'body') last.data += e.data.toString('latin1');
      else out.push({ type: 'body', data: e.data.toString('latin1') });
    } else if (e.type === 'error') out.push({ type: 'error', code: e.error.code, status: e.error.status });
    else out.push(e);
  }
  return out;
}

function parseAll(role: 'request' | 'response', input: Buffer, end = false, methods: string[] = []) {
  const p = new HttpParser(role);
  for (const m of methods) p.expectResponse(m);
  return { p, events: p.feed(input, end) };
}

function bodyOf(events: HttpEvent[]): string {
  return events
    .filter((e) => e.type === 'body')
    .map((e) => (e as { data: Buffer }).data.toString('latin1'))
    .join('');
}

function errorOf(events: HttpEvent[]) {
  const e = events.find((x) => x.type === 'error');
  return e && e.type === 'error' ? e.error : undefined;
}

describe('http parser: requests', () => {
  it('parses an origin-form GET with headers in order and case', () => {
    const { events } = parseAll(
      'request',
      b('GET /a?b=1 HTTP/1.1\r\nHost: x.example\r\nX-Two:  v  \r\nx-two: w\r\n\r\n'),
    );
    assert.equal(events.length, 2);
    const h = events[0]!;
    assert.equal(h.type, 'request-head');
    if (h.type !== 'request-head') return;
    assert.equal(h.head.method, 'GET');
    assert.equal(h.head.target, '/a?b=1');
    assert.equal(h.head.version, '1.1');
    assert.deepEqual(h.head.headers, [
      ['Host', 'x.example'],
      ['X-Two', 'v'],
      ['x-two', 'w'],
    ]);
    assert.equal(getHeader(h.head.headers, 'x-two'), 'v, w');
    assert.deepEqual(h.framing, { kind: 'none' });
    assert.equal(events[1]!.type, 'message-end');
  });

  it('reads a Content-Length body and pipelined requests in order', () => {
    const { events } = parseAll(
      'request',
      b('POST /u HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\n\r\n'),
    );
    assert.deepEqual(
      events.map((e) => e.type),
      ['request-head', 'body', 'message-end', 'request-head', 'message-end'],
    );
    assert.equal(bodyOf(events), 'hello');
  });

  it('decodes chunked bodies with extensions and trailers', () => {
    const msg =
      'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;name=val;q="a\\"b"\r\nhello\r\n0006\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n';
    const { events } = parseAll('request', b(msg));
    assert.equal(bodyOf(events), 'hello world');
    const t = events.find((e) => e.type === 'trailers');
    assert.ok(t && t.type === 'trailers');
    assert.deepEqual(t.headers, [['X-Sum', '1']]);
    assert.equal(events[events.length - 1]!.type, 'message-end');
  });

  it('refuses Content-Length together with Transfer-Encoding (request smuggling guard)', () => {
    const { events } = parseAll(
      'request',
      b('POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'),
    );
    assert.equal(errorOf(events)?.code, 'ERR_HTTP_SMUGGLING');
    assert.equal(errorOf(events)?.status, 400);
  });

  it('refuses differing Content-Length values but accepts identical duplicates', () => {
    assert.equal(
      errorOf(
        parseAll('request', b('POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd'))
          .events,
      )?.code,
      'ERR_HTTP_BAD_CONTENT_LENGTH',
    );
    assert.equal(
      errorOf(parseAll('request', b('POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\nabcd')).events)?.code,
      'ERR_HTTP_BAD_CONTENT_LENGTH',
    );
    assert.equal(
      errorOf(parseAll('request', b('POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc')).events)?.code,
      'ERR_HTTP_BAD_CONTENT_LENGTH',
    );
    const ok = parseAll(
      'request',
      b('POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 003\r\n\r\nabc'),
    ).events;
    assert.equal(bodyOf(ok), 'abc');
  });

  it('refuses transfer codings other than chunked with 501, and TE in HTTP/1.0', () => {
    assert.equal(
      errorOf(parseAll('request', b('POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n')).events)?.status,
      501,
    );
    assert.equal(
      errorOf(parseAll('request', b('POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n')).events)
        ?.status,
      501,
    );
    assert.equal(
      errorOf(parseAll('request', b('POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n')).events)?.code,
      'ERR_HTTP_SMUGGLING',
    );
  });

  it('maps limits to 431 and 414 and versions to 505', () => {
    const big = `GET / HTTP/1.1\r\nX: ${'a'.repeat(70_000)}\r\n\r\n`;
    assert.equal(errorOf(parseAll('request', b(big)).events)?.status, 431);
    const p = new HttpParser('request', { maxHeaderSize: 1024 });
    assert.equal(
      errorOf(p.feed(b(`GET / HTTP/1.1\r\nX: ${'a'.repeat(2000)}`)))?.status,
      431,
      'fails before the head ends',
    );
    assert.equal(errorOf(parseAll('request', b(`GET /${'a'.repeat(20_000)}`)).events)?.status, 414);
    assert.equal(errorOf(parseAll('request', b('GET / HTTP/2.0\r\n\r\n')).events)?.status, 505);
    const many = `GET / HTTP/1.1\r\n${'A: 1\r\n'.repeat(300)}\r\n`;
    assert.equal(errorOf(parseAll('request', b(many)).events)?.status, 431);
  });

  it('refuses malformed heads with 400', () => {
    const bad = [
      'GET  / HTTP/1.1\r\n\r\n',
      'GET / HTTP/1.1 extra\r\n\r\n',
      'G(T / HTTP/1.1\r\n\r\n',
      'GET / HTTP/1.1\r\nBad Name: x\r\n\r\n',
      'GET / HTTP/1.1\r\nName : x\r\n\r\n',
      'GET / HTTP/1.1\r\n: x\r\n\r\n',
      'GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n',
      'GET / HTTP/1.1\r\nA: x\ny\r\n\r\n',
      'GET / HTTP/1.1\r\nA: x\0y\r\n\r\n',
      'GET / HTTPS/1.1\r\n\r\n',
      '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03',
    ];
    for (const m of bad) {
      const err = errorOf(parseAll('request', b(m)).events);
      assert.equal(err?.status, 400, JSON.stringify(m));
    }
  });

  it('rejects bad chunk framing', () => {
    for (const body of [
      'x\r\n',
      '5\r\nhelloXX0\r\n\r\n',
      '5;=\r\nhello\r\n0\r\n\r\n',
      `${'f'.repeat(20)}\r\n`,
    ]) {
      const err = errorOf(
        parseAll('request', b(`POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n${body}`)).events,
      );
      assert.equal(err?.code, 'ERR_HTTP_BAD_CHUNK', JSON.stringify(body));
    }
  });

  it('stops at a CONNECT and hands over the tunnel bytes', () => {
    const { p, events } = parseAll(
      'request',
      b('CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n\x16\x03\x01rest'),
    );
    assert.deepEqual(
      events.map((e) => e.type),
      ['request-head', 'message-end'],
    );
    assert.ok(p.inTunnel);
    assert.equal(p.takeBuffered().toString('latin1'), '\x16\x03\x01rest');
  });

  it('ends cleanly on EOF between messages and reports truncation inside one', () => {
    const clean = parseAll('request', b('GET / HTTP/1.1\r\n\r\n'), true);
    assert.ok(clean.p.done);
    assert.equal(errorOf(clean.events), undefined);
    assert.equal(
      errorOf(parseAll('request', b('POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc'), true).events)?.code,
      'ERR_HTTP_TRUNCATED',
    );
    assert.equal(errorOf(parseAll('request', b('GET / HT'), true).events)?.code, 'ERR_HTTP_INCOMPLETE');
  });
});

describe('http parser: responses', () => {
  it('frames by request method and status', () => {
    const r = parseAll(
      'response',
      b(
        'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n',
      ),
      false,
      ['HEAD', 'GET', 'GET'],
    );
    assert.deepEqual(
      r.events.map((e) => e.type),
      ['response-head', 'message-end', 'response-head', 'message-end', 'response-head', 'message-end'],
    );
  });

  it('passes 1xx through to the final response and tunnels after 101 / CONNECT 2xx', () => {
    const r = parseAll(
      'response',
      b('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'),
      false,
      ['POST'],
    );
    assert.deepEqual(
      r.events.map((e) => (e.type === 'response-head' ? e.head.status : e.type)),
      [100, 'message-end', 200, 'body', 'message-end'],
    );
    const up = parseAll(
      'response',
      b('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello'),
      false,
      ['GET'],
    );
    assert.ok(up.p.inTunnel);
    assert.equal(up.p.takeBuffered().toString('latin1'), '\x81\x05hello');
    const c = parseAll('response', b('HTTP/1.1 200 Connection established\r\n\r\nxyz'), false, ['CONNECT']);
    assert.ok(c.p.inTunnel);
  });

  it('reads until close when there is no framing, and tolerates a missing reason phrase', () => {
    const r = parseAll('response', b('HTTP/1.0 200\r\nServer: old\r\n\r\nabcdef'), true, ['GET']);
    assert.equal(bodyOf(r.events), 'abcdef');
    assert.equal(r.events[r.events.length - 1]!.type, 'message-end');
    const h = r.events[0]!;
    assert.ok(h.type === 'response-head' && h.head.reason === '');
  });

  it('unfolds obs-fold in responses and reports errors with status 502', () => {
    const r = parseAll(
      'response',
      b('HTTP/1.1 200 OK\r\nX-A: one\r\n  two\r\nContent-Length: 0\r\n\r\n'),
      false,
      ['GET'],
    );
    const h = r.events[0]!;
    assert.ok(h.type === 'response-head');
    assert.deepEqual(h.head.headers[0], ['X-A', 'one two']);
    assert.equal(errorOf(parseAll('response', b('HTTP/1.1 2000 OK\r\n\r\n')).events)?.status, 502);
  });
});

describe('http request targets and headers', () => {
  it('parses the four forms', () => {
    assert.deepEqual(parseRequestTarget('GET', '/x'), { form: 'origin', path: '/x' });
    assert.deepEqual(parseRequestTarget('GET', 'http://Example.org:8080/a?b'), {
      form: 'absolute',
      scheme: 'http',
      host: 'example.org',
      port: 8080,
      path: '/a?b',
    });
    assert.deepEqual(parseRequestTarget('GET', 'http://example.org?q'), {
      form: 'absolute',
      scheme: 'http',
      host: 'example.org',
      port: 80,
      path: '/?q',
    });
    assert.deepEqual(parseRequestTarget('CONNECT', '[::1]:443'), {
      form: 'authority',
      host: '::1',
      port: 443,
    });
    assert.deepEqual(parseRequestTarget('OPTIONS', '*'), { form: 'asterisk' });
    assert.equal(parseRequestTarget('CONNECT', 'example.org'), null);
    assert.equal(parseRequestTarget('GET', 'http://user@evil/'), null);
    assert.equal(parseRequestTarget('GET', 'ftp://x/'), null);
    assert.equal(parseRequestTarget('GET', '*'), null);
  });

  it('strips hop-by-hop fields including those named by Connection', () => {
    const h = stripHopByHop([
      ['Host', 'a'],
      ['Connection', 'keep-alive, X-Private'],
      ['X-Private', '1'],
      ['Keep-Alive', 'timeout=5'],
      ['Transfer-Encoding', 'chunked'],
      ['Accept', '*/*'],
    ]);
    assert.deepEqual(h, [
      ['Host', 'a'],
      ['Accept', '*/*'],
    ]);
  });
});

// ---- properties -------------------------------------------------------------------------------

const token = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/);
const fieldValue = fc.stringMatching(/^[!-~]([ -~]{0,30}[!-~])?$/);
const bodyBytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));

const validRequest = fc
  .record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'),
    path: fc.stringMatching(/^\/[A-Za-z0-9/._~?=&-]{0,40}$/),
    headers: fc.array(
      fc.tuple(token, fieldValue).filter(([n]) => !/^(content-length|transfer-encoding)$/i.test(n)),
      { maxLength: 8 },
    ),
    body: bodyBytes,
    chunked: fc.boolean(),
    chunkSizes: fc.array(fc.integer({ min: 1, max: 50 }), { maxLength: 10 }),
  })
  .map(({ method, path, headers, body, chunked, chunkSizes }) => {
    const hs: Array<[string, string]> = [...headers];
    const parts: Buffer[] = [];
    if (chunked) {
      hs.push(['Transfer-Encoding', 'chunked']);
      let off = 0;
      for (const n of [...chunkSizes, body.length]) {
        if (off >= body.length) break;
        parts.push(...encodeChunk(body.subarray(off, off + n)));
        off += n;
      }
      parts.push(encodeLastChunk([['X-Trailer', 'done']]));
    } else {
      hs.push(['Content-Length', String(body.length)]);
      parts.push(body);
    }
    const head = serializeRequestHead({ method, target: path, version: '1.1', headers: hs });
    return { wire: Buffer.concat([head, ...parts]), body, headers: hs, method, path };
  });

describe('http parser properties', () => {
  it('arbitrary bytes never throw and always end in events or an error', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2000 }),
        fc.constantFrom('request', 'response') as fc.Arbitrary<'request' | 'response'>,
        (bytes, role) => {
          const p = new HttpParser(role, { maxHeaderSize: 512 });
          p.expectResponse('GET');
          const events = p.feed(Buffer.from(bytes), true);
          const errors = events.filter((e) => e.type === 'error');
          assert.ok(errors.length <= 1);
          if (errors.length) assert.equal(events[events.length - 1]!.type, 'error');
          assert.equal(p.next(), null);
          assert.ok(p.done, 'after the end of input the parser is finished: clean end, error or tunnel');
        },
      ),
      { numRuns: 1500 },
    );
  });

  it('mutated valid messages never throw', () => {
    fc.assert(
      fc.property(
        validRequest,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 5 }),
        (req, edits) => {
          const wire = Buffer.from(req.wire);
          for (const [at, byte] of edits) if (wire.length) wire[at % wire.length] = byte;
          const events = new HttpParser('request').feed(wire, true);
          for (const e of events)
            if (e.type === 'error') assert.ok(e.error.status >= 400 && e.error.status < 600);
        },
      ),
      { numRuns: 800 },
    );
  });

  it('a valid message split at every position gives identical events', () => {
    fc.assert(
      fc.property(validRequest, (req) => {
        const whole = normalize(new HttpParser('request').feed(req.wire, true));
        for (let i = 0; i <= req.wire.length; i++) {
          const p = new HttpParser('request');
          const ev = [...p.feed(req.wire.subarray(0, i)), ...p.feed(req.wire.subarray(i), true)];
          assert.deepEqual(normalize(ev), whole);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('byte-at-a-time feeding equals one push', () => {
    fc.assert(
      fc.property(validRequest, (req) => {
        const whole = normalize(new HttpParser('request').feed(req.wire, true));
        const p = new HttpParser('request');
        const ev: HttpEvent[] = [];
        for (const byte of req.wire) ev.push(...p.feed(Buffer.from([byte])));
        ev.push(...p.feed(Buffer.alloc(0), true));
        assert.deepEqual(normalize(ev), whole);
      }),
      { numRuns: 100 },
    );
  });

  it('serialize → parse round-trips head, body and chunking', () => {
    fc.assert(
      fc.property(validRequest, (req) => {
        const events = new HttpParser('request').feed(req.wire, true);
        assert.equal(errorOf(events), undefined);
        const head = events[0]!;
        assert.ok(head.type === 'request-head');
        assert.equal(head.head.method, req.method);
        assert.equal(head.head.target, req.path);
        assert.deepEqual(head.head.headers, req.headers);
        assert.ok(bodyOf(events) === req.body.toString('latin1'));
        assert.equal(events[events.length - 1]!.type, 'message-end');
      }),
      { numRuns: 300 },
    );
  });

  it('response heads round-trip through the serializer', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 200, max: 599 }),
        fc.array(fc.tuple(token, fieldValue), { maxLength: 6 }),
        (status, headers) => {
          const hs = headers.filter(([n]) => !/^(content-length|transfer-encoding)$/i.test(n));
          const wire = serializeResponseHead({
            version: '1.1',
            status,
            reason: 'Some Reason',
            headers: [...hs, ['Content-Length', '0']],
          });
          const p = new HttpParser('response');
          p.expectResponse('GET');
          const ev = p.feed(wire);
          const h = ev[0]!;
          assert.ok(h.type === 'response-head');
          assert.equal(h.head.status, status);
          assert.equal(h.head.reason, 'Some Reason');
          assert.deepEqual(h.head.headers, [...hs, ['Content-Length', '0']]);
        },
      ),
      { numRuns: 200 },
    );
  });
});
