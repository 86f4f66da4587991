import { addExtension, Decoder, Encoder } from 'cbor-x';
import { constants as zlib, deflateRawSync, inflateRawSync } from 'node:zlib';
import type { TSchema, Static } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { InvalidMessageError, MalformedMessageError, MessageTooLargeError } from './errors.js';
import { limits } from './limits.js';
import { BroadcastMessage, DownMessage, UpMessage } from './messages.js';

// Plain CBOR maps and arrays only: no record extension, no shared structures, so any CBOR
// implementation can read what we write.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

/**
 * The protocol uses no CBOR tags, but cbor-x decodes many by default: dates, sets, typed arrays,
 * bignums (in worse than quadratic time: a 256 KiB one blocks the event loop for seconds), and
 * value sharing (tags 28/29: a 132-byte message expanding to a huge or self-referencing value).
 * Every tag it knows is refused here; any other tag decodes to a `Tag`, which is not plain data
 * and fails validation.
 */
const HIGHEST_KNOWN_TAG = 300;
for (let tag = 0; tag <= HIGHEST_KNOWN_TAG; tag++) {
  const refuse = (): never => {
    throw new Error(`CBOR tag ${tag} is not part of the protocol`);
  };
  // Decode side only: without `Class` cbor-x registers no encoder.
  addExtension({ tag, decode: refuse } as unknown as Parameters<typeof addExtension>[0]);
}

export function encodeCbor(value: unknown): Buffer {
  return encoder.encode(value);
}

/** Decodes stored CBOR the process wrote itself (no size limit, no schema). */
export function decodeCbor(bytes: Uint8Array): unknown {
  return decoder.decode(bytes);
}

/** Decodes bytes that must hold exactly one CBOR item; throws on anything else (trailing bytes, a refused tag). */
export function decodeOneCbor(bytes: Uint8Array): unknown {
  // cbor-x's decode throws on trailing bytes ("end of buffer not reached") and on an empty input.
  return decoder.decode(bytes);
}

/** Messages smaller than this go as they are: deflate's header and CPU do not pay for themselves. */
const COMPRESS_FROM_BYTES = 512;
/** CBOR major type 2 (byte string) in the top three bits of the first byte. */
const isByteString = (first: number): boolean => first >> 5 === 2;

/**
 * Wire form of an encoded message (and the agent's stored outbox batches). A batch, page or change set repeats its field names,
 * collection, HLC prefix and origin in every entry; raw deflate removes most of that (a
 * telemetry batch shrinks to about a fifth). A compressed message travels as one CBOR byte
 * string holding the deflated CBOR message; every message itself is an array, so the first
 * byte tells the two apart. Kept only when it saves at least an eighth.
 */
export function compress(bytes: Buffer): Buffer {
  if (bytes.length < COMPRESS_FROM_BYTES) return bytes;
  const deflated = deflateRawSync(bytes, { level: zlib.Z_BEST_SPEED });
  return deflated.length < bytes.length - (bytes.length >> 3) ? encodeCbor(deflated) : bytes;
}

/** The CBOR inside bytes `compress` made, for bytes the process stored itself (no size limit: see MessageCodec for the wire's). */
export function decompressStored(bytes: Buffer): Buffer {
  return isByteString(bytes[0]!) ? inflateRawSync(decoder.decode(bytes) as Uint8Array) : bytes;
}

/**
 * Decodes and validates one direction of the protocol. Throws typed errors:
 * MessageTooLargeError before anything is parsed, MalformedMessageError for bytes that are not
 * one CBOR item, InvalidMessageError (with the path) for CBOR that does not match the schema.
 */
export class MessageCodec<S extends TSchema> {
  readonly #check: TypeCheck<S>;

  constructor(
    schema: S,
    readonly maxBytes: number = limits.maxMessageBytes,
  ) {
    this.#check = TypeCompiler.Compile(schema);
  }

  /** The message's wire form, compressed when that pays; `maxBytes` bounds it uncompressed. */
  encode(message: Static<S>): Buffer {
    const bytes = encodeCbor(message);
    if (bytes.length > this.maxBytes) throw new MessageTooLargeError(bytes.length, this.maxBytes);
    return compress(bytes);
  }

  decode(wire: Uint8Array): Static<S> {
    if (wire.length > this.maxBytes) throw new MessageTooLargeError(wire.length, this.maxBytes);
    if (wire.length === 0) throw new MalformedMessageError('empty payload');
    const bytes = isByteString(wire[0]!) ? this.#inflate(wire) : wire;
    let value: unknown;
    try {
      value = decodeOneCbor(bytes);
    } catch (cause) {
      if (cause instanceof MalformedMessageError) throw cause;
      throw new MalformedMessageError((cause as Error).message ?? String(cause), { cause });
    }
    if (!this.#check.Check(value)) {
      const first = this.#check.Errors(value).First();
      throw new InvalidMessageError(first?.path ?? '', first?.message ?? 'does not match');
    }
    return value;
  }

  /** The message inside a compressed wire form; never more than `maxBytes` of it (no zip bombs). */
  #inflate(wire: Uint8Array): Buffer {
    let deflated: unknown;
    try {
      deflated = decoder.decode(wire);
    } catch (cause) {
      throw new MalformedMessageError(`compressed message: ${(cause as Error).message}`, { cause });
    }
    if (!(deflated instanceof Uint8Array)) throw new MalformedMessageError('compressed message is not one byte string');
    try {
      return inflateRawSync(deflated, { maxOutputLength: this.maxBytes });
    } catch (cause) {
      if ((cause as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw new MessageTooLargeError(this.maxBytes + 1, this.maxBytes);
      throw new MalformedMessageError(`compressed message does not inflate: ${(cause as Error).message}`, { cause });
    }
  }
}

export const upCodec = new MessageCodec(UpMessage);
export const downCodec = new MessageCodec(DownMessage);
export const broadcastCodec = new MessageCodec(BroadcastMessage);
