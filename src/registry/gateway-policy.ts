/**
 * The SMTP gateway's use of the registry, as MessagePolicy plug-ins (src/protocols/smtp/policy.ts):
 *
 * inbound (listeners in registry.gateway.inbound): a message whose sender is enrolled, or which
 *   claims to be registered (X-Registered / X-Confirmation-No), is verified against the registry and
 *   gets `X-Scangate-Phishing: pass | fail | suspicious; verdict=…`. On `fail` (tampered, or not
 *   registered although the sender is enrolled or it claims to be) the config decides: `header`
 *   only, `tag` the subject as well, or `reject` (550 5.7.1). `suspicious`: the message claims
 *   registration but cannot be checked (no usable From/To/Date, header too long).
 * outbound (listeners in registry.gateway.outbound): a message from an address bound to the
 *   organisation's account is registered with the organisation's key and leaves stamped with
 *   X-Registered / X-Confirmation-No — the gateway signs for its senders, as a DKIM signer does.
 *
 * A registry that cannot answer (database down) makes the policy throw: the relay answers 451 and
 * the sender retries, so nothing is let through unchecked or lost (DESIGN 2).
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { EventSink } from '../admin/events.js';
import type { ObjectSource } from '../engine/source.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { JudgedMessage, MessagePolicy, PolicyDecision } from '../protocols/smtp/policy.js';
import { canonicalAddress } from './address.js';
import { RegistryError } from './errors.js';
import type { RegistryConfig } from './index.js';
import { makeProof } from './keys.js';
import {
  CONFIRMATION_HEADER,
  MAX_HEADER_BYTES,
  type MailFacts,
  mailFacts,
  REGISTERED_HEADER,
} from './mail.js';
import { queryOfFacts } from './mailcheck.js';
import type { RegistryService, VerifyResult } from './service.js';
import { SignatureHasher } from './signature.js';

export const PHISHING_HEADER = 'X-Scangate-Phishing';

type GatewayConfig = RegistryConfig['gateway'];

/** Header facts and the content signature of a spooled message; null when the header is unusable. */
async function readMessage(content: ObjectSource): Promise<{
  facts: MailFacts;
  /** The message already carries an X-Scangate-Phishing field (written by the sender, or an earlier hop). */
  foreignVerdict: boolean;
  signature: () => Promise<string | null>;
} | null> {
  const head = await content.read(0, Math.min(content.size, MAX_HEADER_BYTES));
  let facts: MailFacts;
  try {
    facts = mailFacts(head);
  } catch {
    return null;
  }
  // No end of header within the first MAX_HEADER_BYTES of a longer message: not checkable.
  if (facts.bodyOffset >= head.length && content.size > head.length) return null;
  const header = head.subarray(0, facts.bodyOffset).toString('latin1');
  return {
    facts,
    foreignVerdict: /(^|\n)x-scangate-phishing[ \t]*:/i.test(header),
    async signature() {
      if (!facts.from || !facts.to || !facts.date) return null;
      let h: SignatureHasher;
      try {
        h = new SignatureHasher({ from: facts.from, to: facts.to, date: facts.date });
      } catch (e) {
        if (e instanceof RegistryError) return null; // an address or date the registry cannot take
        throw e;
      }
      h.update(facts.contentPrefix);
      for await (const chunk of content.stream(facts.bodyOffset)) h.update(chunk);
      return h.digest();
    },
  };
}

function phishingHeader(result: 'pass' | 'fail' | 'suspicious', why: string): string {
  return `${PHISHING_HEADER}: ${result}; verdict=${why}`;
}

export function inboundPolicy(
  service: RegistryService,
  config: GatewayConfig,
  logger: Logger,
  events?: EventSink,
): MessagePolicy {
  const listeners = new Set(config.inbound);
  return {
    name: 'registry-inbound',
    async judge(m: JudgedMessage): Promise<PolicyDecision> {
      if (!listeners.has(m.listener.name)) return { action: 'accept' };
      const msg = await readMessage(m.content);
      if (!msg) return { action: 'accept', headers: [phishingHeader('suspicious', 'unreadable-header')] };
      const { facts } = msg;
      const claims = facts.claimsRegistered || facts.confirmationNo !== undefined;
      const from = facts.from ? canonicalOrNull(facts.from) : null;
      const enrolled = from !== null && (await service.isEnrolled(from));
      if (!enrolled && !claims)
        // Nothing the registry can say — but a verdict field the sender wrote itself must not stand
        // alone for filters downstream to trust: ours, put first, says it is not ours.
        return msg.foreignVerdict
          ? { action: 'accept', headers: [phishingHeader('suspicious', 'foreign-verdict-field')] }
          : { action: 'accept' };
      const signature = await msg.signature();
      if (!signature) return { action: 'accept', headers: [phishingHeader('suspicious', 'unverifiable')] };
      let result: VerifyResult;
      try {
        // signature() is non-null only when From, To and Date are present.
        result = await service.verify(queryOfFacts(facts as Parameters<typeof queryOfFacts>[0], signature));
      } catch (e) {
        if (e instanceof RegistryError && e.status === 400)
          return { action: 'accept', headers: [phishingHeader('suspicious', 'unverifiable')] };
        throw e;
      }
      if (result.verdict === 'authentic')
        return { action: 'accept', headers: [phishingHeader('pass', 'authentic')] };
      if (result.verdict === 'unknown-sender')
        return { action: 'accept', headers: [phishingHeader('suspicious', 'unknown-sender')] };
      logger.info(
        { listener: m.listener.name, client: m.client, verdict: result.verdict },
        'registry: inbound mail failed verification',
      );
      // One security event per flagged message, like a scanner verdict (DESIGN 4.3).
      events?.emit({
        kind: 'verdict',
        listener: m.listener.name,
        protocol: 'smtp',
        client: m.client,
        server: m.server,
        object: `message from ${m.mailFrom || '<>'}`,
        signature: `Registry.${result.verdict === 'tampered' ? 'Tampered' : 'NotRegistered'}`,
        action: config.onFail === 'reject' ? 'rejected' : 'tagged',
        reason: result.reason,
      });
      if (config.onFail === 'reject')
        return {
          action: 'refuse',
          reply: {
            code: 550,
            lines: [
              `5.7.1 Message refused: the sender's registry says this mail is ${result.verdict} (likely forged)`,
            ],
          },
          reason: `registry verdict ${result.verdict}`,
        };
      return {
        action: 'accept',
        headers: [phishingHeader('fail', result.verdict)],
        ...(config.onFail === 'tag' ? { subjectTag: config.subjectTag } : {}),
      };
    },
  };
}

function canonicalOrNull(address: string): string | null {
  try {
    return canonicalAddress(address);
  } catch {
    return null;
  }
}

export interface Organisation {
  accountId: number;
  key: KeyObject;
}

export function outboundPolicy(
  service: RegistryService,
  config: GatewayConfig,
  org: Organisation,
  logger: Logger,
): MessagePolicy {
  const listeners = new Set(config.outbound);
  return {
    name: 'registry-outbound',
    async judge(m: JudgedMessage): Promise<PolicyDecision> {
      if (!listeners.has(m.listener.name)) return { action: 'accept' };
      const msg = await readMessage(m.content);
      if (!msg || !msg.facts.from || msg.facts.confirmationNo) return { action: 'accept' };
      const from = canonicalOrNull(msg.facts.from);
      if (!from || !(await service.ownsAddress(org.accountId, from))) return { action: 'accept' };
      const signature = await msg.signature();
      if (!signature) return { action: 'accept' };
      const proof = makeProof(org.key, signature).toString('base64');
      let confirmationNo: string;
      try {
        const r = await service.registerMessage(org.accountId, {
          from,
          to: msg.facts.to,
          date: msg.facts.date,
          signature,
          proof,
        });
        confirmationNo = r.confirmationNo;
      } catch (e) {
        // The same message again (a retry after a temporary failure): it keeps its number.
        const existing =
          e instanceof RegistryError && e.status === 409 ? e.details?.confirmationNo : undefined;
        if (!existing) throw e;
        confirmationNo = existing;
      }
      logger.debug({ listener: m.listener.name }, 'registry: outbound mail registered');
      return {
        action: 'accept',
        headers: [`${REGISTERED_HEADER}: Yes`, `${CONFIRMATION_HEADER}: ${confirmationNo}`],
      };
    },
  };
}

/**
 * The policies the config asks for: inbound when `gateway.inbound` names listeners, outbound when
 * `gateway.outbound` does (then `gateway.organisation` must name the token and key files).
 */
export async function registryPolicies(
  service: RegistryService,
  config: RegistryConfig,
  logger: Logger,
  events?: EventSink,
): Promise<MessagePolicy[]> {
  const g = config.gateway;
  const policies: MessagePolicy[] = [];
  if (g.inbound.length) policies.push(inboundPolicy(service, g, logger, events));
  if (g.outbound.length) {
    if (!g.organisation)
      throw new ConfigError(
        'registry.gateway.organisation',
        'outbound registration needs tokenFile and keyFile',
      );
    const token = (await readFile(g.organisation.tokenFile, 'utf8')).trim();
    const account = await service.authenticate(token);
    if (!account)
      throw new ConfigError(
        'registry.gateway.organisation.tokenFile',
        'the token does not belong to an account of this registry',
      );
    let key: KeyObject;
    try {
      key = createPrivateKey(await readFile(g.organisation.keyFile));
    } catch (e) {
      throw new ConfigError(
        'registry.gateway.organisation.keyFile',
        `cannot load the private key: ${(e as Error).message}`,
      );
    }
    policies.push(outboundPolicy(service, g, { accountId: account.id, key }, logger));
  }
  return policies;
}
