import type { EngineConfig } from '../../config/schema.js';
import { ScanError } from '../../errors.js';
import { ClamdScanner } from './clamd.js';

export { ClamdScanner } from './clamd.js';

/** Connects to the configured clamd, checks it answers, and learns its version. */
export async function createClamdScanner(cfg: EngineConfig['clamd']): Promise<ClamdScanner> {
  const s = new ClamdScanner({
    address: cfg.address,
    timeoutMs: cfg.timeout,
    connectTimeoutMs: cfg.connectTimeout,
  });
  try {
    await s.ping();
    await s.fetchVersion();
  } catch (e) {
    throw new ScanError('ERR_CLAMD_UNAVAILABLE', `engine.backend is clamd but ${(e as Error).message}`, {
      cause: e,
    });
  }
  return s;
}
