/**
 * Mail servers for the SMTP gateway tests.
 *
 * - startMailServer: a real SMTP server (nodemailer's `smtp-server`) on 127.0.0.1 with plaintext,
 *   STARTTLS or implicit TLS (a pki.ts certificate), AUTH PLAIN/LOGIN, and a record of every message
 *   it accepted (envelope and the exact bytes of the content) for assertions.
 * - startScriptedServer: a raw TCP server whose replies a test scripts line by line, for behaviour a
 *   well-behaved server never shows (a 452 to DATA, closing after the data, plaintext injected after
 *   its STARTTLS 220).
 */
import { once } from 'node:events';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import type { TestCert } from './pki.js';

export interface DeliveredMessage {
  from: string;
  to: string[];
  data: Buffer;
  user: string | undefined;
  secure: boolean;
}

export interface MailServer {
  port: number;
  messages: DeliveredMessage[];
  /** MAIL FROM addresses seen (accepted or not), in order. */
  mailFrom: string[];
  /** Commands smtp-server saw, verb only, in order (from its protocol log). */
  close(): Promise<void>;
}

export interface MailServerOptions {
  tls: 'none' | 'starttls' | 'implicit';
  cert?: TestCert;
  /** Accepted credentials; AUTH is offered when given. */
  auth?: { user: string; pass: string };
  /** RCPT TO addresses refused with 550. */
  rejectRcpt?: string[];
  /** Called for each message; throw an Error with responseCode to refuse it. */
  onMessage?: (m: DeliveredMessage, session: SMTPServerSession) => void;
  size?: number;
  extra?: Partial<SMTPServerOptions>;
}

export async function startMailServer(o: MailServerOptions): Promise<MailServer> {
  const messages: DeliveredMessage[] = [];
  const mailFrom: string[] = [];
  const server = new SMTPServer({
    secure: o.tls === 'implicit',
    ...(o.cert ? { key: o.cert.keyPem, cert: o.cert.chainPem } : {}),
    disabledCommands: [...(o.tls === 'none' ? ['STARTTLS'] : []), ...(o.auth ? [] : ['AUTH'])],
    authOptional: true,
    allowInsecureAuth: true,
    authMethods: ['PLAIN', 'LOGIN'],
    logger: false,
    banner: 'test mail server',
    size: o.size ?? 100 * 1024 * 1024,
    onAuth(auth, _session, cb) {
      if (o.auth && auth.username === o.auth.user && auth.password === o.auth.pass)
        return cb(null, { user: auth.username });
      const err = Object.assign(new Error('Invalid username or password'), { responseCode: 535 });
      return cb(err);
    },
    onMailFrom(address, _session, cb) {
      mailFrom.push(address.address);
      cb();
    },
    onRcptTo(address, _session, cb) {
      if (o.rejectRcpt?.includes(address.address))
        return cb(
          Object.assign(new Error(`5.1.1 <${address.address}>: Recipient address rejected`), {
            responseCode: 550,
          }),
        );
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const m: DeliveredMessage = {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          data: Buffer.concat(chunks),
          user: session.user as string | undefined,
          secure: session.secure,
        };
        try {
          o.onMessage?.(m, session);
        } catch (e) {
          return cb(e as Error);
        }
        messages.push(m);
        cb(null, 'Ok: queued');
      });
    },
    ...o.extra,
  });
  server.on('error', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    messages,
    mailFrom,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** One scripted connection: the test reads client lines and writes replies. */
export interface ScriptedConnection {
  socket: Socket | TLSSocket;
  /** Next line from the client (without CRLF); null at EOF. */
  line(): Promise<string | null>;
  send(text: string): void;
  /** Reads one message's content up to CRLF.CRLF (dot-stuffed as sent). */
  data(): Promise<string>;
  /** Server-side STARTTLS handshake on the current socket. */
  startTls(cert: TestCert): Promise<void>;
  /** Every line read so far. */
  seen: string[];
}

export interface ScriptedServer {
  port: number;
  connections: number;
  close(): Promise<void>;
}

export async function startScriptedServer(
  script: (c: ScriptedConnection) => Promise<void>,
): Promise<ScriptedServer> {
  const sockets = new Set<Socket>();
  const state = { connections: 0 };
  const server: Server = createServer((raw) => {
    state.connections++;
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    raw.on('error', () => {});
    let socket: Socket | TLSSocket = raw;
    let buf = '';
    let ended = false;
    let waiter: (() => void) | null = null;
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      waiter?.();
    };
    const onEnd = () => {
      ended = true;
      waiter?.();
    };
    const attach = (s: Socket | TLSSocket) => {
      s.on('data', onData);
      s.on('end', onEnd);
      s.on('close', onEnd);
    };
    attach(raw);
    const wait = () =>
      new Promise<void>((r) => {
        waiter = r;
      });
    const seen: string[] = [];
    const conn: ScriptedConnection = {
      get socket() {
        return socket;
      },
      seen,
      async line() {
        for (;;) {
          const i = buf.indexOf('\r\n');
          if (i >= 0) {
            const l = buf.slice(0, i);
            buf = buf.slice(i + 2);
            seen.push(l);
            return l;
          }
          if (ended) return null;
          await wait();
        }
      },
      send(text) {
        if (!socket.destroyed) socket.write(text);
      },
      async data() {
        for (;;) {
          const i = buf.indexOf('\r\n.\r\n');
          if (i >= 0) {
            const d = buf.slice(0, i + 2);
            buf = buf.slice(i + 5);
            return d;
          }
          if (buf.startsWith('.\r\n')) {
            buf = buf.slice(3);
            return '';
          }
          if (ended) return buf;
          await wait();
        }
      },
      async startTls(cert) {
        raw.off('data', onData);
        raw.off('end', onEnd);
        raw.off('close', onEnd);
        buf = '';
        const tls = new TLSSocket(raw, { isServer: true, key: cert.keyPem, cert: cert.chainPem });
        tls.on('error', () => {});
        socket = tls;
        attach(tls);
        await once(tls, 'secure');
      },
    };
    script(conn)
      .catch(() => {})
      .finally(() => {
        if (!socket.destroyed) socket.end();
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    get connections() {
      return state.connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A minimal well-behaved script: greeting, EHLO, MAIL, RCPT, DATA, QUIT; hooks override replies. */
export async function basicScript(
  c: ScriptedConnection,
  hooks: { ehlo?: string; onData?: () => string | null; afterData?: (content: string) => string | null } = {},
): Promise<void> {
  c.send('220 scripted ESMTP\r\n');
  for (;;) {
    const l = await c.line();
    if (l === null) return;
    const verb = l.split(' ')[0]!.toUpperCase();
    if (verb === 'EHLO') c.send(hooks.ehlo ?? '250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n');
    else if (verb === 'HELO' || verb === 'MAIL' || verb === 'RCPT' || verb === 'RSET' || verb === 'NOOP')
      c.send('250 2.0.0 Ok\r\n');
    else if (verb === 'DATA') {
      const r = hooks.onData?.() ?? '354 go ahead\r\n';
      c.send(r);
      if (!r.startsWith('354')) continue;
      const content = await c.data();
      const after = hooks.afterData ? hooks.afterData(content) : '250 2.0.0 Ok: queued\r\n';
      if (after === null) {
        c.socket.destroy();
        return;
      }
      c.send(after);
    } else if (verb === 'QUIT') {
      c.send('221 2.0.0 Bye\r\n');
      c.socket.end();
      return;
    } else c.send('502 5.5.2 Error: command not recognized\r\n');
  }
}
