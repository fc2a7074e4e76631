/**
 * Session-ticket keys for the TLS server contexts scangate presents to clients (RFC 5077; the TLS 1.3
 * tickets of RFC 8446 §4.6.1). Left to itself, each context makes its own random keys: with
 * `workers: N` the primary deals a client's next connection to any worker, and a ticket from one
 * worker means nothing to the others, so a client resumes one time in N and pays a full handshake
 * the rest (for the gateway: a certificate signature, a key exchange and, on the tunnel, a client
 * chain to verify).
 *
 * In a cluster the primary makes one secret and forks every worker with it; a context's keys are
 * derived from that secret and from what identifies the context (the host a leaf was minted for,
 * the exact TLS material a tunnel listener uses), so every worker derives the same keys for the
 * same context and different ones for anything else. A ticket therefore still never outlives the
 * material it was issued under: new tunnel certificates or a new CRL give new keys, and a client
 * whose certificate was revoked cannot resume past the change. Without a cluster the keys are
 * random per context, as Node's own.
 */
import { createHash, hkdfSync, randomBytes } from 'node:crypto';

/** How the secret reaches a worker: its environment at fork, removed as soon as the worker reads it. */
const ENV = 'SCANGATE_TICKET_SECRET';
/** Node's ticket key format: 16-byte key name, 16-byte HMAC key, 16-byte AES key. */
const TICKET_KEYS_LENGTH = 48;

let secret: Buffer | null = null;
let primarySecret: string | null = null;

/** The primary: the environment each worker is forked with (the same secret for all of them). */
export function clusterTicketEnv(): Record<string, string> {
  primarySecret ??= randomBytes(32).toString('hex');
  return { [ENV]: primarySecret };
}

/** A worker: takes the secret out of its environment, so that nothing it starts inherits it. */
export function adoptClusterTicketSecret(): void {
  const value = process.env[ENV];
  delete process.env[ENV];
  if (value && /^[0-9a-f]{64}$/.test(value)) secret = Buffer.from(value, 'hex');
}

/**
 * Ticket keys for the server context identified by `scope`: the same in every worker of a cluster
 * for the same scope, random when there is no cluster.
 */
export function ticketKeys(...scope: (string | Buffer)[]): Buffer {
  if (!secret) return randomBytes(TICKET_KEYS_LENGTH);
  const info = createHash('sha256');
  for (const part of scope) info.update(part).update('\0');
  return Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), info.digest(), TICKET_KEYS_LENGTH));
}
