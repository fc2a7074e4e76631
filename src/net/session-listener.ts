/**
 * A listener whose every accepted connection runs one protocol session (ftp, smtp, icap, clamd):
 * the allow-list, connection limit and drain of `createTcpListener`, plus what each of those
 * protocols did alike around its session — errors never thrown from the socket, Nagle off (they
 * all answer line by line), a session that fails logged and its socket destroyed, and one
 * shutdown signal that close() raises before draining so sessions stop taking new work.
 */
import { setMaxListeners } from 'node:events';
import type { Socket } from 'node:net';
import type { Logger } from '../logger.js';
import { createTcpListener } from './listener.js';
import type { RunningService } from './service.js';

export interface SessionListenerOptions {
  listener: { name: string; listen: string; allow?: string[]; maxConnections: number };
  protocol: string;
  log: Logger;
  /** Raised by close() before the drain; the sessions' contexts hold its signal. */
  shutdown?: AbortController;
  /** Runs one session on an accepted socket; a rejection is logged and ends the connection. */
  session: (socket: Socket) => Promise<void> | void;
}

export async function startSessionListener(o: SessionListenerOptions): Promise<RunningService> {
  // Every open session may listen for the shutdown; up to maxConnections of them is expected.
  if (o.shutdown) setMaxListeners(0, o.shutdown.signal);
  const failed = `${o.protocol} session failed`;
  const { name, listen, allow, maxConnections } = o.listener;
  const listener = await createTcpListener({
    name,
    listen,
    allow,
    maxConnections,
    logger: o.log,
    onConnection: (socket: Socket) => {
      socket.on('error', () => {});
      socket.setNoDelay(true);
      let run: Promise<void> | void;
      try {
        run = o.session(socket);
      } catch (e) {
        run = Promise.reject(e);
      }
      run?.catch((e: Error) => {
        o.log.warn({ err: e.message }, failed);
        socket.destroy();
      });
    },
  });
  return {
    name,
    protocol: o.protocol,
    address: listener.address,
    close: (deadlineMs?: number) => {
      o.shutdown?.abort();
      return listener.close(deadlineMs);
    },
  };
}
