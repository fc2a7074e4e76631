import { ScangateError } from '../errors.js';

/**
 * A registry request or input that cannot be accepted. `status` is the HTTP status the API answers
 * with (400 invalid input, 401/403 authentication, 404, 409 conflict/replay, 413 too large, 429
 * rate limited); `field` names the offending input when there is one. Messages are safe to show:
 * they never echo a secret (token, code, private key).
 */
export class RegistryError extends ScangateError {
  readonly status: number;
  readonly field: string | undefined;
  /** Extra public facts for the answer (e.g. the existing confirmation number of a duplicate). */
  readonly details: Record<string, string> | undefined;
  constructor(code: string, message: string, status = 400, field?: string, details?: Record<string, string>) {
    super(code, message);
    this.status = status;
    this.field = field;
    this.details = details;
  }
}

export const invalid = (field: string, message: string): RegistryError =>
  new RegistryError('ERR_REGISTRY_INVALID', `${field}: ${message}`, 400, field);
