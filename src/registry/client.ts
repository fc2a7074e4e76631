/**
 * A client of the registry's HTTP API (the CLI, the SMTP gateway when the registry is remote,
 * tests). Error answers become RegistryError with the server's code, status and details.
 */
import type { KeyObject } from 'node:crypto';
import { RegistryError } from './errors.js';
import { makeProof } from './keys.js';
import { stampMail } from './mail.js';
import { queryOfMail } from './mailcheck.js';
import type { VerifyResult } from './service.js';

export interface RegistrationResult {
  confirmationNo: string;
  registeredAt?: string;
  /** True when the registry already held this message (409) and returned its number. */
  existing: boolean;
}

export class RegistryClient {
  private readonly base: string;
  constructor(
    baseUrl: string,
    private readonly token?: string,
  ) {
    this.base = baseUrl.replace(/\/+$/, '');
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    const json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    if (!res.ok) {
      const err = (json.error ?? {}) as Record<string, string>;
      const { code, message, field, ...details } = err;
      throw new RegistryError(
        code ?? 'ERR_REGISTRY_HTTP',
        message ?? `HTTP ${res.status}`,
        res.status,
        field,
        details as Record<string, string>,
      );
    }
    return json as T;
  }

  createAccount(name: string) {
    return this.request<{ accountId: number; token: string }>('POST', '/api/v1/accounts', { name });
  }
  requestAddress(address: string) {
    return this.request<{ ref: string; expiresAt: string }>('POST', '/api/v1/addresses', { address });
  }
  confirmAddress(ref: string, code: string) {
    return this.request<{ address: string }>('POST', '/api/v1/addresses/confirm', { ref, code });
  }
  addKey(publicKey: string) {
    return this.request<{ id: string; algorithm: string }>('POST', '/api/v1/keys', { publicKey });
  }
  verify(query: Record<string, unknown>) {
    return this.request<VerifyResult & { signature?: string }>('POST', '/api/v1/verify', query);
  }

  async registerMessage(fields: {
    from: string;
    to: string;
    date: string;
    signature: string;
    proof: string;
  }): Promise<RegistrationResult> {
    try {
      const r = await this.request<{ confirmationNo: string; registeredAt: string }>(
        'POST',
        '/api/v1/messages',
        fields,
      );
      return { ...r, existing: false };
    } catch (e) {
      const n = e instanceof RegistryError ? e.details?.confirmationNo : undefined;
      if (e instanceof RegistryError && e.status === 409 && n) return { confirmationNo: n, existing: true };
      throw e;
    }
  }

  /** Signs, proves, registers a raw mail and returns it stamped with the confirmation number. */
  async registerMail(raw: Buffer, privateKey: KeyObject): Promise<{ mail: Buffer } & RegistrationResult> {
    const q = queryOfMail(raw);
    const proof = makeProof(privateKey, q.signature).toString('base64');
    const r = await this.registerMessage({
      from: q.from,
      to: q.to,
      date: q.date,
      signature: q.signature,
      proof,
    });
    return { ...r, mail: stampMail(raw, r.confirmationNo) };
  }
}
