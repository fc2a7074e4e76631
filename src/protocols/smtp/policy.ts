/**
 * The seam "message judged → policy": after the scanner's verdict and the listener's onInfected
 * policy have decided a message may go on to the server, and before a single byte of it is offered
 * there, every MessagePolicy given to the listener looks at it and may add header fields or refuse
 * it. This is where other features plug in without touching the relay (the anti-phishing registry's
 * inbound check and outbound stamping, for instance); metrics and logs can use `settled`, which
 * sees every message, delivered or not.
 *
 * Policies run in the order given; the first refusal wins and later policies are not asked. Added
 * header fields are prepended to the message, like trace fields (RFC 5322 §3.6.7), after the
 * relay's own `X-Scangate-*` fields, so every byte of the original message still follows unchanged.
 *
 * Safety properties the relay keeps whatever a policy does: the client's 250 is still the server's
 * own 250; a policy that throws makes the message fail temporarily (451 4.3.0, the sender retries),
 * never accepted-then-lost; a policy cannot turn a refused (infected, unscanned) message into a
 * delivered one, because refused messages never reach `judge`.
 */
import type { SmtpListenerConfig } from '../../config/schema.js';
import type { ObjectSource } from '../../engine/source.js';
import type { Verdict } from '../../engine/types.js';
import type { Reply } from './reply.js';

/** One message on its way to the server, as the policies see it. Read-only. */
export interface JudgedMessage {
  /** The listener's configuration (policies may read their own per-listener keys from it). */
  readonly listener: SmtpListenerConfig;
  /** Client and server addresses, `host:port`. */
  readonly client: string;
  readonly server: string;
  /** Whether the client leg is TLS, and whether the server accepted an AUTH on this connection. */
  readonly clientTls: boolean;
  readonly authenticated: boolean;
  /** The reverse-path of MAIL FROM, without angle brackets ('' for the null sender). */
  readonly mailFrom: string;
  /** Forward-paths the server accepted with a 2xx to RCPT TO, without angle brackets. */
  readonly recipients: readonly string[];
  /**
   * The message as it will be forwarded, without the prefix header fields: the original bytes, or
   * the stripped copy when policy strip removed parts. CRLF line endings, not dot-stuffed.
   */
  readonly content: ObjectSource;
  /** Header fields the relay already puts in front (each line ending in CRLF). */
  readonly prefix: Buffer;
  /** The scanner's verdict on the message as received (infected with policy strip/tag is possible). */
  readonly verdict: Verdict;
}

export type PolicyDecision =
  /**
   * Forward, with these complete header fields (`Name: value`, no CRLF; folded lines allowed) added,
   * and with `subjectTag` (e.g. `[PHISHING?]`) put in front of the Subject (subject-tag.ts); the
   * body is forwarded unchanged. Several policies' tags apply in order.
   */
  | { action: 'accept'; headers?: readonly string[]; subjectTag?: string }
  /** Refuse the message with this reply (4xx: the sender retries; 5xx: it bounces). Nothing is sent upstream. */
  | { action: 'refuse'; reply: Reply; reason: string };

/** How a message ended, for `settled`. */
export interface MessageOutcome {
  /** The reply the client got for this message. */
  readonly reply: Reply;
  /** True when the server answered 2xx to the end of data: the message is the server's now. */
  readonly delivered: boolean;
  /** scanner: refused by verdict/onInfected; policy: by a MessagePolicy; server: the server's own reply; local: spool/size/… */
  readonly decidedBy: 'scanner' | 'policy' | 'server' | 'local';
  /** Octets received from the client (after dot-unstuffing). */
  readonly size: number;
  /** Milliseconds from the client's end of data to the client's reply. */
  readonly ms: number;
  readonly verdict: Verdict | null;
}

export interface MessagePolicy {
  /** For logs: which policy refused or failed. */
  readonly name: string;
  /** Asked once per message that is about to be forwarded. May read `content` (not modify it). */
  judge?(message: JudgedMessage): Promise<PolicyDecision>;
  /**
   * Told once per message after the client has its reply (delivered, refused, or failed), and when
   * the server leg fails mid-message (reply 421); not when the client vanishes before its end of
   * data. Must not throw (a throw is logged and ignored). `message` is null unless the message
   * reached the policies (refused by the scanner, too big, spool error); `outcome.verdict` carries
   * the scanner's verdict whenever there was one.
   */
  settled?(message: JudgedMessage | null, outcome: MessageOutcome): void;
}

/** Checks a header field a policy wants added: a name, a colon, no bare CR/LF except folding. */
export function validHeaderField(field: string): boolean {
  return /^[!-9;-~]+:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*$/.test(field) && !/[\u0000]/.test(field);
}
