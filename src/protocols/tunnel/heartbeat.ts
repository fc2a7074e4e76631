/**
 * Dead-peer detection for long-lived connections. Any byte received counts as a sign of life; after an
 * interval of silence a PING goes out, and when silence reaches the timeout the peer is declared dead.
 * One coarse timer per connection and a flag per read: nothing on the per-frame hot path.
 */
export class Heartbeat {
  private seenSinceTick = true;
  private silentMs = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly intervalMs: number,
    private readonly timeoutMs: number,
    private readonly ping: () => void,
    private readonly dead: () => void,
  ) {}

  start(): this {
    if (this.intervalMs > 0 && !this.timer) {
      this.timer = setInterval(() => this.tick(), this.intervalMs);
      this.timer.unref();
    }
    return this;
  }

  seen(): void {
    this.seenSinceTick = true;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private tick(): void {
    if (this.seenSinceTick) {
      this.seenSinceTick = false;
      this.silentMs = 0;
      return;
    }
    this.silentMs += this.intervalMs;
    if (this.silentMs >= this.timeoutMs) {
      this.stop();
      this.dead();
    } else this.ping();
  }
}
