import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/**
 * Reads MQTT fixed headers as bytes pass and refuses a packet whose announced size is over the
 * limit, before anything buffers it. aedes has no maximum packet size (aedes #831): without
 * this a client could make the hub hold ~256 MB per connection.
 */
export class FrameMeter {
  #state: 'type' | 'length' | 'body' = 'type';
  #length = 0;
  #multiplier = 1;
  #lengthBytes = 0;
  #remaining = 0;

  constructor(readonly maxPacketBytes: number) {}

  /** False once a packet announces more than the limit (or a malformed length). */
  feed(chunk: Uint8Array): boolean {
    let i = 0;
    while (i < chunk.length) {
      if (this.#state === 'type') {
        i += 1;
        this.#state = 'length';
        this.#length = 0;
        this.#multiplier = 1;
        this.#lengthBytes = 0;
      } else if (this.#state === 'length') {
        const byte = chunk[i++]!;
        this.#length += (byte & 0x7f) * this.#multiplier;
        this.#multiplier *= 128;
        this.#lengthBytes += 1;
        if (byte & 0x80) {
          if (this.#lengthBytes === 4) return false; // MQTT allows at most four length bytes
          continue;
        }
        if (this.#length > this.maxPacketBytes) return false;
        this.#remaining = this.#length;
        this.#state = this.#remaining === 0 ? 'type' : 'body';
      } else {
        const take = Math.min(this.#remaining, chunk.length - i);
        i += take;
        this.#remaining -= take;
        if (this.#remaining === 0) this.#state = 'type';
      }
    }
    return true;
  }
}

/**
 * Wraps a socket in a stream that passes bytes to the broker only while every packet is within
 * `maxPacketBytes`; on the first oversized packet the socket is destroyed and `onRefused` runs.
 */
export function guardConnection(socket: Socket, maxPacketBytes: number, onRefused: (announced: string) => void): Duplex {
  const meter = new FrameMeter(maxPacketBytes);
  const guarded = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, encoding, callback) {
      socket.write(chunk, encoding, callback);
    },
    final(callback) {
      socket.end(callback);
    },
    destroy(error, callback) {
      socket.destroy(error ?? undefined);
      callback(error);
    },
  });
  // The broker and the fleet view ask the connection for the peer's address; with mutual TLS the
  // authenticator asks for the verified client certificate's common name.
  const tls = socket as Partial<TLSSocket>;
  const peerCommonName = tls.authorized === true ? String(tls.getPeerCertificate?.().subject?.CN ?? '') || undefined : undefined;
  Object.assign(guarded, { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, peerCommonName });
  socket.on('data', (chunk: Buffer) => {
    if (!meter.feed(chunk)) {
      onRefused(`${socket.remoteAddress ?? 'unknown'}:${socket.remotePort ?? ''}`);
      socket.destroy();
      return;
    }
    if (!guarded.push(chunk)) socket.pause();
  });
  socket.on('end', () => guarded.push(null));
  socket.on('close', () => guarded.destroy());
  socket.on('error', (error) => guarded.destroy(error));
  return guarded;
}
