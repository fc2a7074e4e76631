/**
 * Telling the sessions that wait between requests that their listener is shutting down. One
 * listener on the shutdown signal serves them all: with one 'abort' listener per waiting session,
 * thousands of idle keep-alive connections would each add and remove a listener around every
 * request (an EventTarget's removal is linear in its listeners, and Node warns past ten).
 */
export interface ShutdownWatch {
  readonly aborted: boolean;
  /** Calls `fn` once the shutdown starts, unless removed first. */
  add(fn: () => void): void;
  remove(fn: () => void): void;
}

export class ShutdownHub implements ShutdownWatch {
  private readonly waiting = new Set<() => void>();

  constructor(private readonly signal: AbortSignal) {
    signal.addEventListener(
      'abort',
      () => {
        for (const fn of [...this.waiting]) fn();
      },
      { once: true },
    );
  }

  get aborted(): boolean {
    return this.signal.aborted;
  }

  add(fn: () => void): void {
    this.waiting.add(fn);
  }

  remove(fn: () => void): void {
    this.waiting.delete(fn);
  }
}

/** A watch straight on a signal (one listener per waiter), or on nothing: for sessions built without a hub. */
export function watchSignal(signal: AbortSignal | undefined): ShutdownWatch {
  return {
    get aborted() {
      return signal?.aborted ?? false;
    },
    add: (fn) => signal?.addEventListener('abort', fn),
    remove: (fn) => signal?.removeEventListener('abort', fn),
  };
}
