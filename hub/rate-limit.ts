/**
 * Connection attempts per address in a fixed window. A fleet behind one NAT shares an address,
 * so the default is generous; its job is to blunt a reconnect storm or a scan, not to meter.
 */
export class ConnectRateLimiter {
  readonly #windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts an attempt from `address`; false once the address is over its limit in this window. */
  allow(address: string): boolean {
    const now = this.now();
    let window = this.#windows.get(address);
    if (!window || now - window.start >= this.windowMs) {
      window = { start: now, count: 0 };
      this.#windows.set(address, window);
      if (this.#windows.size > 10_000) this.#sweep(now); // do not grow without bound under a scan
    }
    window.count += 1;
    return window.count <= this.limit;
  }

  #sweep(now: number): void {
    for (const [address, window] of this.#windows) if (now - window.start >= this.windowMs) this.#windows.delete(address);
  }
}
