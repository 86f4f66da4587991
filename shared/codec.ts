import { addExtension, Decoder, Encoder } from 'cbor-x';
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

/**
 * Decodes and validates one direction of the protocol. Throws typed errors:
 * MessageTooLargeError before anything is parsed, MalformedMessageError for bytes that are not
 * one CBOR item, InvalidMessageError (with the path) for CBOR that does not match the schema.
 */
export class MessageCodec<S extends TSchema> {
  readonly #check: TypeCheck<S>;

  constructor(schema: S, readonly maxBytes: number = limits.maxMessageBytes) {
    this.#check = TypeCompiler.Compile(schema);
  }

  encode(message: Static<S>): Buffer {
    const bytes = encodeCbor(message);
    if (bytes.length > this.maxBytes) throw new MessageTooLargeError(bytes.length, this.maxBytes);
    return bytes;
  }

  decode(bytes: Uint8Array): Static<S> {
    if (bytes.length > this.maxBytes) throw new MessageTooLargeError(bytes.length, this.maxBytes);
    if (bytes.length === 0) throw new MalformedMessageError('empty payload');
    let value: unknown;
    try {
      const items = decoder.decodeMultiple(bytes) as unknown[] | undefined;
      if (!items || items.length !== 1) throw new Error(`expected one CBOR item, found ${items?.length ?? 0}`);
      value = items[0];
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
}

export const upCodec = new MessageCodec(UpMessage);
export const downCodec = new MessageCodec(DownMessage);
export const broadcastCodec = new MessageCodec(BroadcastMessage);
