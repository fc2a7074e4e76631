/**
 * The clamd-compatible daemon (listener `protocol: clamd`, DESIGN 4.3): clamdscan, clamav-milter and
 * clamd client libraries talk to scangate's engine over TCP or a unix socket as they would to clamd.
 */
import { chmod, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { ClamdListenerConfig } from '../../config/schema.js';
import type { RunningService } from '../../net/service.js';
import { startSessionListener } from '../../net/session-listener.js';
import { parseAddress } from '../../util/units.js';
import { type ClamdContext, type ClamdDeps, createClamdContext } from './context.js';
import { ClamdSession } from './session.js';

export type { ClamdContext, ClamdDeps } from './context.js';

export interface ClamdService extends RunningService {
  readonly context: ClamdContext;
}

export async function startClamdListener(cfg: ClamdListenerConfig, deps: ClamdDeps): Promise<ClamdService> {
  const ctx = createClamdContext(cfg, deps);
  const target = parseAddress(cfg.listen);
  if ('path' in target) await mkdir(dirname(target.path), { recursive: true });
  const service = await startSessionListener({
    listener: cfg,
    protocol: 'clamd',
    log: ctx.log,
    session: (socket) => {
      ctx.connections.open++;
      socket.once('close', () => ctx.connections.open--);
      new ClamdSession(ctx, socket).start();
    },
  });
  if ('path' in target && cfg.socketMode) await chmod(target.path, Number.parseInt(cfg.socketMode, 8));
  return { ...service, context: ctx };
}
