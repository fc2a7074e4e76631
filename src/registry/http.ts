/**
 * The registry over HTTP (node:http, keep-alive): the JSON API under /api/v1 and the pages.
 *
 *   POST   /api/v1/accounts             {name}                          → 201 {accountId, token}
 *   GET    /api/v1/addresses            (token)                         → 200 [{address, boundAt}]
 *   POST   /api/v1/addresses            (token) {address}               → 202 {ref, expiresAt}; mail sent
 *   POST   /api/v1/addresses/confirm    {ref, code}                     → 200 {address}
 *   DELETE /api/v1/addresses/ADDRESS    (token)                         → 204
 *   POST   /api/v1/keys                 (token) {publicKey}             → 201 {id, algorithm}
 *   DELETE /api/v1/keys/ID              (token)                         → 204
 *   POST   /api/v1/messages             (token) {from,to,date,signature,proof,keyId?} → 201 {confirmationNo, registeredAt}
 *   POST   /api/v1/verify               {from,to,date,signature,confirmationNo?,claimsRegistered?} | {mail} → 200 {verdict,…}
 *   GET    /  POST /check               query page;  GET|POST /confirm  confirmation page
 *
 * (token) = `Authorization: Bearer sgr_…`. Errors are JSON {error: {code, message, field?}} with
 * 400 invalid, 401 no/bad token, 403 not yours, 404, 409 conflict/replay, 413, 415, 429.
 * Nothing secret is logged: the log line has method, path without query, status and time.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../logger.js';
import { RegistryError } from './errors.js';
import { queryOfMail } from './mailcheck.js';
import { CSRF_COOKIE, CsrfGuard, confirmPage, errorPage, queryPage } from './page.js';
import { type RateLimit, RateLimiter } from './ratelimit.js';
import type { RegistryService } from './service.js';

export interface RegistryHttpOptions {
  maxRequestSize: number;
  rateLimits: Record<'register' | 'confirm' | 'query', RateLimit>;
  secureCookies: boolean;
  logger: Logger;
}

type Json = Record<string, unknown>;

class HttpError extends RegistryError {}
const tooLarge = (limit: number) =>
  new HttpError('ERR_REGISTRY_TOO_LARGE', `request body larger than ${limit} bytes`, 413);

export function createRegistryServer(service: RegistryService, options: RegistryHttpOptions): Server {
  const limiter = new RateLimiter(options.rateLimits);
  const csrf = new CsrfGuard(options.secureCookies);
  const server = createServer(
    { keepAliveTimeout: 30_000, headersTimeout: 30_000, requestTimeout: 120_000 },
    (req, res) => {
      const started = Date.now();
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      handle(req, res, path)
        .catch((e) => fail(res, req, e))
        .finally(() => {
          options.logger.debug(
            { method: req.method, path: redactPath(path), status: res.statusCode, ms: Date.now() - started },
            'registry request',
          );
        });
    },
  );

  async function handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const method = req.method ?? 'GET';
    const client = req.socket.remoteAddress ?? '?';
    const limit = (bucket: 'register' | 'confirm' | 'query') => {
      const wait = limiter.take(bucket, client);
      if (wait) {
        res.setHeader('Retry-After', String(wait));
        throw new HttpError('ERR_REGISTRY_RATE', 'too many requests; slow down', 429);
      }
    };
    const auth = async () => {
      const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
      const account = m ? await service.authenticate(m[1] as string) : null;
      if (!account) {
        limit('confirm'); // failed authentications spend the stricter budget: no token guessing
        res.setHeader('WWW-Authenticate', 'Bearer realm="scangate-registry"');
        throw new HttpError('ERR_REGISTRY_AUTH', 'missing or invalid API token', 401);
      }
      return account;
    };

    if (path === '/api/v1/verify' && method === 'POST') {
      limit('query');
      const body = await readJson(req, options.maxRequestSize);
      const query = typeof body.mail === 'string' ? queryOfMail(Buffer.from(body.mail, 'utf8')) : body;
      return sendJson(res, 200, {
        ...(await service.verify(query as never)),
        ...(typeof body.mail === 'string' ? { signature: (query as { signature: string }).signature } : {}),
      });
    }
    if (path === '/api/v1/accounts' && method === 'POST') {
      limit('register');
      const body = await readJson(req, options.maxRequestSize);
      return sendJson(res, 201, await service.createAccount(body.name));
    }
    if (path === '/api/v1/addresses' && method === 'GET')
      return sendJson(res, 200, await service.listAddresses((await auth()).id));
    if (path === '/api/v1/addresses' && method === 'POST') {
      const account = await auth();
      limit('register');
      const body = await readJson(req, options.maxRequestSize);
      return sendJson(res, 202, await service.requestAddress(account.id, body.address));
    }
    if (path === '/api/v1/addresses/confirm' && method === 'POST') {
      limit('confirm');
      const body = await readJson(req, options.maxRequestSize);
      const r = await service.confirmAddress(body.ref, body.code);
      return sendJson(res, 200, { address: r.address });
    }
    if (path.startsWith('/api/v1/addresses/') && method === 'DELETE') {
      const account = await auth();
      await service.unbindAddress(account.id, decodeSegment(path.slice('/api/v1/addresses/'.length)));
      return sendEmpty(res);
    }
    if (path === '/api/v1/keys' && method === 'POST') {
      const account = await auth();
      limit('register');
      const body = await readJson(req, options.maxRequestSize);
      return sendJson(res, 201, await service.addKey(account.id, body.publicKey));
    }
    if (path.startsWith('/api/v1/keys/') && method === 'DELETE') {
      const account = await auth();
      await service.revokeKey(account.id, decodeSegment(path.slice('/api/v1/keys/'.length)));
      return sendEmpty(res);
    }
    if (path === '/api/v1/messages' && method === 'POST') {
      const account = await auth();
      limit('register');
      const body = await readJson(req, options.maxRequestSize);
      return sendJson(res, 201, await service.registerMessage(account.id, body as never));
    }
    if (path === '/healthz' && method === 'GET') return sendJson(res, 200, { status: 'ok' });

    // ---- pages ----
    if (path === '/' && method === 'GET') {
      const t = csrf.issue(cookie(req, CSRF_COOKIE));
      return sendHtml(res, 200, queryPage({ token: t.token }), t.setCookie);
    }
    if (path === '/check' && method === 'POST') {
      limit('query');
      const form = await readForm(req, options.maxRequestSize);
      const t = csrf.issue(cookie(req, CSRF_COOKIE));
      if (!csrf.check(cookie(req, CSRF_COOKIE), form.csrf))
        return sendHtml(
          res,
          403,
          queryPage({
            token: t.token,
            error: 'the form expired or was not sent from this page; please try again',
          }),
          t.setCookie,
        );
      const mail = form.mail?.trim() ? form.mail : undefined;
      try {
        const q = mail
          ? queryOfMail(Buffer.from(mail.replace(/\r?\n/g, '\r\n'), 'utf8'))
          : {
              from: form.from,
              to: form.to,
              date: form.date?.trim(),
              signature: form.signature?.trim(),
              confirmationNo: form.confirmationNo?.trim(),
            };
        const result = await service.verify(q);
        return sendHtml(
          res,
          200,
          queryPage({
            token: t.token,
            mail,
            result: {
              ...result,
              from: String(q.from),
              to: String(q.to),
              date: String(q.date),
              signature: String(q.signature),
            },
          }),
          t.setCookie,
        );
      } catch (e) {
        if (!(e instanceof RegistryError) || e.status !== 400) throw e;
        return sendHtml(res, 400, queryPage({ token: t.token, mail, error: e.message }), t.setCookie);
      }
    }
    if (path === '/confirm' && method === 'GET') {
      // A GET only shows the form: mail scanners open links to look at them, and must not
      // spend the code (or confirm an address nobody clicked for).
      const url = new URL(req.url ?? '/', 'http://x');
      const t = csrf.issue(cookie(req, CSRF_COOKIE));
      return sendHtml(
        res,
        200,
        confirmPage({
          token: t.token,
          ref: url.searchParams.get('ref') ?? '',
          code: url.searchParams.get('code') ?? '',
        }),
        t.setCookie,
      );
    }
    if (path === '/confirm' && method === 'POST') {
      limit('confirm');
      const form = await readForm(req, options.maxRequestSize);
      const t = csrf.issue(cookie(req, CSRF_COOKIE));
      const again = (status: number, error: string) =>
        sendHtml(
          res,
          status,
          confirmPage({ token: t.token, ref: form.ref ?? '', code: '', error }),
          t.setCookie,
        );
      if (!csrf.check(cookie(req, CSRF_COOKIE), form.csrf))
        return again(403, 'the form expired or was not sent from this page; please try again');
      try {
        const r = await service.confirmAddress(form.ref, form.code);
        return sendHtml(
          res,
          200,
          confirmPage({ token: t.token, ref: '', code: '', done: r.address }),
          t.setCookie,
        );
      } catch (e) {
        if (!(e instanceof RegistryError) || e.status >= 500) throw e;
        return again(e.status, e.message);
      }
    }
    throw new HttpError('ERR_REGISTRY_NOT_FOUND', `no ${method} ${path}`, 404);
  }

  function fail(res: ServerResponse, req: IncomingMessage, e: unknown): void {
    const known = e instanceof RegistryError;
    if (!known)
      options.logger.error(
        { err: (e as Error).message, path: redactPath((req.url ?? '').split('?')[0] ?? '') },
        'registry: request failed',
      );
    const status = known ? e.status : 500;
    const payload = known
      ? {
          error: {
            code: e.code,
            message: e.message,
            ...(e.field ? { field: e.field } : {}),
            ...(e.details ?? {}),
          },
        }
      : { error: { code: 'ERR_REGISTRY_INTERNAL', message: 'internal error' } };
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const wantsHtml = !(req.url ?? '').startsWith('/api/');
    if (status === 413) res.setHeader('Connection', 'close');
    if (wantsHtml) sendHtml(res, status, errorPage(status, payload.error.message), null);
    else sendJson(res, status, payload);
  }

  return server;
}

export async function listen(server: Server, host: string, port: number): Promise<AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server.address() as AddressInfo;
}

/** Addresses in paths are personal data; logs keep only the route. */
function redactPath(path: string): string {
  return path.replace(/^(\/api\/v1\/(addresses|keys)\/).+$/, '$1…');
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError('ERR_REGISTRY_INVALID', 'malformed path', 400);
  }
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Reads a body of at most `limit` bytes. Past the limit the rest is read and dropped (up to a
 * multiple of it) so the client gets its 413 instead of a reset mid-upload; then the socket goes.
 */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? '0');
  const chunks: Buffer[] = [];
  let size = 0;
  let over = declared > limit;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) over = true;
    if (over) {
      if (size > limit * 16 + 16 * 1024 ** 2) {
        req.destroy();
        break;
      }
      continue;
    }
    chunks.push(chunk);
  }
  if (over) throw tooLarge(limit);
  return Buffer.concat(chunks);
}

async function readJson(req: IncomingMessage, limit: number): Promise<Json> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json')
    throw new HttpError('ERR_REGISTRY_MEDIA_TYPE', 'expected Content-Type: application/json', 415);
  const raw = await readBody(req, limit);
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw));
  } catch {
    throw new HttpError('ERR_REGISTRY_INVALID', 'body is not valid UTF-8 JSON', 400);
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new HttpError('ERR_REGISTRY_INVALID', 'body must be a JSON object', 400);
  return body as Json;
}

async function readForm(req: IncomingMessage, limit: number): Promise<Record<string, string | undefined>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded')
    throw new HttpError('ERR_REGISTRY_MEDIA_TYPE', 'expected a form', 415);
  const raw = await readBody(req, limit);
  return Object.fromEntries(new URLSearchParams(raw.toString('utf8')));
}

const COMMON_HEADERS = {
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    ...COMMON_HEADERS,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': data.length,
  });
  res.end(data);
}

function sendEmpty(res: ServerResponse): void {
  res.writeHead(204, COMMON_HEADERS);
  res.end();
}

function sendHtml(res: ServerResponse, status: number, html: string, setCookie: string | null): void {
  const data = Buffer.from(html);
  res.writeHead(status, {
    ...COMMON_HEADERS,
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': data.length,
    // Pages have no script and post only to themselves.
    'Content-Security-Policy':
      "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    'X-Frame-Options': 'DENY',
    ...(setCookie ? { 'Set-Cookie': setCookie } : {}),
  });
  res.end(data);
}
