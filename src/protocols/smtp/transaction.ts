/**
 * One message, from the client's DATA to the reply it gets: the content is received and spooled
 * completely, scanned (message.ts), shown to the listener's MessagePolicy list (policy.ts), and only
 * then offered to the server (Postfix's `speed_adjust` shape): a refused message never starts a DATA
 * transaction upstream, so the connection survives for the next message, and the client's 250 is
 * always the server's own 250 for that message.
 */
import type { SecurityEvent } from '../../admin/events.js';
import { Spool } from '../../engine/source.js';
import type { Verdict } from '../../engine/types.js';
import type { SmtpChannel } from './channel.js';
import type { SmtpContext } from './context.js';
import { type Decision, judgeMessage, type SpooledMessage } from './message.js';
import type { JudgedMessage, MessageOutcome, PolicyDecision } from './policy.js';
import { validHeaderField } from './policy.js';
import { type Reply, reply, replySummary } from './reply.js';
import type { ServerLeg } from './server-leg.js';
import { tagSubject } from './subject-tag.js';
import { UPSTREAM_KEEPALIVE_MS } from './timeouts.js';

/** The accepted envelope of the transaction in progress (RFC 5321 §3.3). */
export interface Envelope {
  mailFrom: string;
  recipients: string[];
}

/** What the session needs to know to run one message. */
export interface TransferContext {
  ctx: SmtpContext;
  client: SmtpChannel;
  server: ServerLeg;
  clientAddress: string;
  serverAddress: string;
  authenticated: boolean;
  /** This message's number on the connection, from 1 (for events). */
  number: number;
  emit(e: Omit<SecurityEvent, 'listener' | 'protocol' | 'client' | 'server'>): void;
}

export type TransferResult =
  /** The client went away before its end of data. */
  | { kind: 'closed' }
  /** Our own refusal that counts as a client error (RFC 5321 §4.5.3.1.10 552: too big). */
  | { kind: 'error'; reply: Reply }
  /** Our reply for this message (a verdict, a policy, a local failure). */
  | { kind: 'local'; reply: Reply }
  /** The server's own reply to the message (a 421 ends the session). */
  | { kind: 'server'; reply: Reply };

const LOCAL_ERROR = reply(451, '4.3.0 Local error in processing; try again later');
/** What `settled` hears when the server leg fails mid-message (the session then sends its own 421). */
const SERVER_LOST = reply(421, '4.4.2 connection to the mail server lost');
/** BDAT content with a bare CR or LF (RFC 5321 §2.3.8; no BINARYMIME offered). */
const BARE_LINE_END = reply(
  554,
  '5.6.0 Message content has a bare <CR> or <LF>; lines must end with <CR><LF>',
);
const TOO_BIG = reply(552, '5.3.4 Message size exceeds fixed maximum message size');

/**
 * Runs DATA after the 354: receive, judge, apply policies, deliver. Every path that does not end in
 * the server's reply to the content leaves the server with no transaction (RSET), so the next
 * message starts clean.
 */
export async function transferMessage(
  t: TransferContext,
  envelope: Envelope,
  /** A message already received by BDAT (chunking.ts); without it, DATA content is read now. */
  chunked?: { spool: Spool; outcome: 'ok' | 'toobig' | 'bad' },
): Promise<TransferResult> {
  const { ctx } = t;
  const started = Date.now();
  const spool = chunked?.spool ?? messageSpool(ctx);
  let judged: JudgedMessage | null = null;
  let verdict: Verdict | null = null;
  let size = 0;
  const settle = (r: TransferResult, decidedBy: MessageOutcome['decidedBy']): TransferResult => {
    if (r.kind !== 'closed')
      notifySettled(t, judged, {
        reply: r.reply,
        delivered: r.kind === 'server' && r.reply.code >= 200 && r.reply.code < 300,
        decidedBy,
        size,
        ms: Date.now() - started,
        verdict,
      });
    return r;
  };
  try {
    const received = chunked ? chunked.outcome : await receive(t, spool);
    size = spool.size;
    if (received === 'closed') return { kind: 'closed' };
    if (received === 'toobig' || received === 'bad') {
      await t.server.housekeeping('RSET');
      return settle({ kind: 'error', reply: received === 'toobig' ? TOO_BIG : BARE_LINE_END }, 'local');
    }
    let message: SpooledMessage;
    let decision: Decision;
    try {
      // The Spool hashed the bytes as they arrived; its scan input carries that digest, so the
      // engine does not hash the message a second time for its verdict cache.
      const { source } = await spool.finish();
      message = { source, input: spool.scanInput() };
      decision = await judgeMessage(message, {
        scanner: ctx.deps.scanner,
        policy: ctx.cfg.onInfected,
        onError: ctx.deps.config.engine.onError,
        spoolDir: ctx.spoolDir,
        spoolMemory: ctx.cfg.spoolMemory,
      });
    } catch (e) {
      // A local failure (spool disk full, …): the sender keeps the message and retries.
      ctx.log.error({ client: t.clientAddress, err: (e as Error).message }, 'smtp: message not processed');
      await t.server.housekeeping('RSET');
      return settle({ kind: 'local', reply: LOCAL_ERROR }, 'local');
    }
    verdict = decision.verdict;
    const object = `message ${t.number} from ${envelope.mailFrom}`;
    const base = {
      from: envelope.mailFrom,
      recipients: envelope.recipients.length,
      size: message.source.size,
    };
    if (decision.action === 'refuse') {
      t.emit(verdictEvent(decision.verdict, decision.eventAction, object, decision.reason));
      await t.server.housekeeping('RSET');
      ctx.log.info(
        { ...base, ms: Date.now() - started, client: t.clientAddress, reply: replySummary(decision.reply) },
        'smtp: message refused',
      );
      return settle({ kind: 'local', reply: decision.reply }, 'scanner');
    }
    try {
      if (decision.eventAction) t.emit(verdictEvent(decision.verdict, decision.eventAction, object));
      judged = {
        listener: ctx.cfg,
        client: t.clientAddress,
        server: t.serverAddress,
        clientTls: t.client.encrypted,
        authenticated: t.authenticated,
        mailFrom: envelope.mailFrom,
        recipients: [...envelope.recipients],
        content: decision.source,
        prefix: decision.prefix,
        verdict: decision.verdict,
      };
      const policy = await runPolicies(t, judged);
      if (policy.action === 'refuse') {
        await t.server.housekeeping('RSET');
        ctx.log.info(
          { ...base, client: t.clientAddress, policy: policy.name, reason: policy.reason },
          'smtp: message refused by policy',
        );
        return settle({ kind: 'local', reply: policy.reply }, policy.name === null ? 'local' : 'policy');
      }
      const prefix = policy.headers.length
        ? Buffer.concat([decision.prefix, Buffer.from(policy.headers.map((h) => `${h}\r\n`).join(''))])
        : decision.prefix;
      let content = decision.source;
      for (const tag of policy.subjectTags.reverse()) content = await tagSubject(content, tag);
      let r: Reply;
      try {
        r = await t.server.deliver(prefix, content);
      } catch (e) {
        // The server leg failed mid-message: the session answers 421 and ends; nothing was accepted.
        settle({ kind: 'server', reply: SERVER_LOST }, 'server');
        throw e;
      }
      ctx.log.info(
        {
          ...base,
          ms: Date.now() - started,
          client: t.clientAddress,
          verdict: decision.verdict.status,
          reply: replySummary(r),
        },
        'smtp: message relayed',
      );
      return settle({ kind: 'server', reply: r }, 'server');
    } finally {
      await decision.dispose();
    }
  } finally {
    await spool.dispose();
  }
}

/** Where one message waits while it is scanned: memory up to spoolMemory, then dataDir/spool. */
export function messageSpool(ctx: SmtpContext): Spool {
  return new Spool({ dir: ctx.spoolDir, memoryLimit: ctx.cfg.spoolMemory });
}

/** The one JSON event of a non-clean verdict: the signature and where, or why (a refusal's reason, a scan error). */
function verdictEvent(
  v: Verdict,
  action: SecurityEvent['action'],
  object: string,
  reason?: string,
): Omit<SecurityEvent, 'listener' | 'protocol' | 'client' | 'server'> {
  const why = reason ?? (v.status === 'error' ? v.reason : undefined);
  return {
    kind: 'verdict',
    action,
    object,
    ...(v.status === 'infected' ? { signature: v.signature, location: v.location } : {}),
    ...(why !== undefined ? { reason: why } : {}),
  };
}

/** Reads the client's message into the spool (bounded by maxMessageSize). */
async function receive(t: TransferContext, spool: Spool): Promise<'ok' | 'toobig' | 'closed'> {
  const max = t.ctx.cfg.maxMessageSize;
  t.client.reader.startData();
  let size = 0;
  let tooBig = false;
  for (;;) {
    const ev = await t.client.next(t.ctx.cfg.idleTimeout);
    if (!ev) return 'closed';
    if (ev.type === 'end') break;
    if (ev.type !== 'data') continue;
    size += ev.chunk.length;
    if (size > max) tooBig = true;
    // Past the limit the rest is read and dropped: the client must reach its "." to hear the 552.
    if (!tooBig) await spool.write(ev.chunk);
    if (Date.now() - t.server.lastUse > UPSTREAM_KEEPALIVE_MS) await t.server.housekeeping('NOOP');
  }
  return tooBig ? 'toobig' : 'ok';
}

type PolicyResult =
  | { action: 'accept'; headers: string[]; subjectTags: string[] }
  /** `name` null: a policy failed (threw, or asked for a malformed header): a local error. */
  | { action: 'refuse'; reply: Reply; reason: string; name: string | null };

/** Asks each MessagePolicy in turn; the first refusal wins. */
async function runPolicies(t: TransferContext, m: JudgedMessage): Promise<PolicyResult> {
  const headers: string[] = [];
  const subjectTags: string[] = [];
  for (const p of t.ctx.policies) {
    if (!p.judge) continue;
    let d: PolicyDecision;
    try {
      d = await p.judge(m);
    } catch (e) {
      t.ctx.log.error({ policy: p.name, err: (e as Error).message }, 'smtp: message policy failed');
      return { action: 'refuse', reply: LOCAL_ERROR, reason: `policy ${p.name} failed`, name: null };
    }
    if (d.action === 'refuse') {
      const code = d.reply.code;
      // A policy may refuse, never pretend to accept: only 4xx/5xx replies are passed on.
      if (code < 400 || code > 599) {
        t.ctx.log.error({ policy: p.name, code }, 'smtp: message policy refused with a non-error reply');
        return { action: 'refuse', reply: LOCAL_ERROR, reason: `policy ${p.name} bad reply`, name: null };
      }
      return { action: 'refuse', reply: d.reply, reason: d.reason, name: p.name };
    }
    for (const h of d.headers ?? []) {
      if (!validHeaderField(h)) {
        t.ctx.log.error({ policy: p.name }, 'smtp: message policy asked for a malformed header field');
        return { action: 'refuse', reply: LOCAL_ERROR, reason: `policy ${p.name} bad header`, name: null };
      }
      headers.push(h);
    }
    if (d.subjectTag !== undefined) {
      if (!/^[\x20-\x7e]{1,64}$/.test(d.subjectTag)) {
        t.ctx.log.error({ policy: p.name }, 'smtp: message policy asked for a malformed subject tag');
        return {
          action: 'refuse',
          reply: LOCAL_ERROR,
          reason: `policy ${p.name} bad subject tag`,
          name: null,
        };
      }
      subjectTags.push(d.subjectTag);
    }
  }
  return { action: 'accept', headers, subjectTags };
}

function notifySettled(t: TransferContext, m: JudgedMessage | null, outcome: MessageOutcome): void {
  for (const p of t.ctx.policies) {
    if (!p.settled) continue;
    try {
      p.settled(m, outcome);
    } catch (e) {
      t.ctx.log.warn({ policy: p.name, err: (e as Error).message }, 'smtp: message policy settled() threw');
    }
  }
}
