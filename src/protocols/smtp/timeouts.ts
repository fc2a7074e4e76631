/**
 * How long the relay waits for the server's replies: the client-side timeouts of RFC 5321 §4.5.3.2,
 * since toward the server the relay is the SMTP client. Waiting for the client uses the listener's
 * idleTimeout (default 5 minutes, the server timeout of §4.5.3.2.7).
 */
const MINUTE = 60_000;

export const REPLY_TIMEOUTS = {
  /** §4.5.3.2.1 Initial 220 message: 5 minutes. */
  greeting: 5 * MINUTE,
  /** §4.5.3.2.2 MAIL, §4.5.3.2.3 RCPT: 5 minutes; used for every other command too. */
  command: 5 * MINUTE,
  /** §4.5.3.2.4 DATA initiation: 2 minutes. */
  dataInit: 2 * MINUTE,
  /** §4.5.3.2.5 Data block: 3 minutes for each write to be taken. */
  dataBlock: 3 * MINUTE,
  /** §4.5.3.2.6 DATA termination: 10 minutes for the reply to the final ".". */
  dataTermination: 10 * MINUTE,
} as const;

/** While a client uploads a long message, the idle server connection gets a NOOP this often. */
export const UPSTREAM_KEEPALIVE_MS = MINUTE;
