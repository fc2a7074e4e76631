/**
 * What every listener implementation (http, smtp, ftp, tunnel, clamd, icap) gets and gives back.
 * `scangate run` builds the shared dependencies once and starts one service per configured listener.
 */
import type { AddressInfo } from 'node:net';
import type { EventSink } from '../admin/events.js';
import type { Config } from '../config/schema.js';
import type { Scanner } from '../engine/types.js';
import type { Logger } from '../logger.js';

export interface RunningService {
  readonly name: string;
  readonly protocol: string;
  /** The bound address (port 0 in the config resolves here), or the unix socket path. */
  readonly address: AddressInfo | string;
  /** Stops accepting; resolves when existing sessions have finished or `deadlineMs` has passed. */
  close(deadlineMs?: number): Promise<void>;
}

export interface ServiceDeps {
  config: Config;
  scanner: Scanner;
  logger: Logger;
  events: EventSink;
}
