import { Type, type Static } from '@sinclair/typebox';
import { limits } from './limits.js';
import { Change, Epoch, Hlc, Lineage, Lsn, message, strict } from './message-parts.js';

/**
 * What a device tells a hub restored from a backup that it lost (docs/OPERATIONS.md): `lost`
 * up, chunk by chunk, each answered by `lostack` once stored (part of the protocol:
 * shared/messages.ts).
 */

/**
 * A document version a restored hub no longer has, as this device held it: in its replica, or
 * as one of its own writes the hub had acknowledged. `ver` is its version in the lost lineage.
 */
export const LostDoc = Type.Object(
  {
    ...Type.Omit(Change, ['lsn', 'op', 'bk']).properties,
    op: Type.Union([Type.Literal('put'), Type.Literal('del')]),
    ver: Type.Integer({ minimum: 1 }),
  },
  strict,
);
export type LostDoc = Static<typeof LostDoc>;
/**
 * One chunk of the agent's report of what the hub lost when it was restored: documents of
 * lineage `lin` above `fork` (where the restored hub's history parted from it). Resent until
 * the hub answers `lostack` with the same `id`.
 */
export const LostMessage = message(
  'lost',
  Type.Object(
    {
      id: Type.Integer({ minimum: 0 }),
      lin: Lineage,
      fork: Lsn,
      docs: Type.Array(LostDoc, { minItems: 1, maxItems: limits.maxLostDocs }),
    },
    strict,
  ),
);
/** The hub has stored the lost-document report chunk `id`: the agent may forget it. */
export const LostAckMessage = message(
  'lostack',
  Type.Object({ id: Type.Integer({ minimum: 0 }), hlc: Hlc, epoch: Type.Optional(Epoch) }, strict),
);
export type LostMessage = Static<typeof LostMessage>;
export type LostAckMessage = Static<typeof LostAckMessage>;
