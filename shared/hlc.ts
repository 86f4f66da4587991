/**
 * Hybrid logical clock (Kulkarni et al.). A timestamp is 48 bits of wall-clock milliseconds and
 * a 16-bit logical counter, written as 16 lowercase hex digits so that string order is time
 * order (in SQLite as well as in JavaScript). Devices without a real-time clock may start far
 * in the past; observing the hub's timestamps pulls them forward, and the clock never runs
 * backwards even when the wall clock does.
 */
export type Hlc = string & { readonly __brand: 'Hlc' };

export const HLC_PATTERN = /^[0-9a-f]{16}$/;
const MAX_LOGICAL = 0xffff;

export const ZERO_HLC = encodeHlc(0, 0);

export function encodeHlc(wall: number, logical: number): Hlc {
  return (wall.toString(16).padStart(12, '0') + logical.toString(16).padStart(4, '0')) as Hlc;
}

export function decodeHlc(hlc: Hlc): { wall: number; logical: number } {
  return { wall: parseInt(hlc.slice(0, 12), 16), logical: parseInt(hlc.slice(12), 16) };
}

export function isHlc(value: unknown): value is Hlc {
  return typeof value === 'string' && HLC_PATTERN.test(value);
}

export class HybridClock {
  #wall: number;
  #logical: number;

  /** @param now wall clock in ms; injectable so tests can skew it. */
  constructor(
    private readonly now: () => number = Date.now,
    last: Hlc = ZERO_HLC,
  ) {
    ({ wall: this.#wall, logical: this.#logical } = decodeHlc(last));
  }

  /** The latest timestamp issued or observed. */
  get last(): Hlc {
    return encodeHlc(this.#wall, this.#logical);
  }

  /** A new timestamp for a local event, greater than every one issued or observed before. */
  tick(): Hlc {
    const physical = this.now();
    if (physical > this.#wall) {
      this.#wall = physical;
      this.#logical = 0;
    } else {
      this.#bumpLogical();
    }
    return this.last;
  }

  /** Advances the clock past a timestamp received from a peer. */
  observe(remote: Hlc): void {
    const r = decodeHlc(remote);
    const physical = this.now();
    const wall = Math.max(this.#wall, r.wall, physical);
    if (wall === this.#wall && wall === r.wall) {
      this.#logical = Math.max(this.#logical, r.logical);
      this.#bumpLogical();
    } else if (wall === this.#wall) {
      this.#bumpLogical();
    } else if (wall === r.wall) {
      this.#wall = wall;
      this.#logical = r.logical;
      this.#bumpLogical();
    } else {
      this.#wall = wall;
      this.#logical = 0;
    }
  }

  #bumpLogical(): void {
    if (this.#logical < MAX_LOGICAL) {
      this.#logical += 1;
    } else {
      // 65,536 events in one millisecond: borrow the next millisecond rather than wrap.
      this.#wall += 1;
      this.#logical = 0;
    }
  }
}
