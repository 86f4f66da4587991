import { Type, type Static } from '@sinclair/typebox';
import { Epoch, Hlc, message, strict } from './message-parts.js';

/**
 * The transfer budget the hub's config declares for a device (`budgets`, by agent id, group or
 * `*`), sent on the default partition's `down` topic whenever the device says hello: bytes per
 * UTC day (`d`) and per UTC month (`m`); neither, none is declared. The device's own budget
 * options, if it has any, take precedence.
 */
export const BudgetMessage = message(
  'budget',
  Type.Object(
    {
      hlc: Hlc,
      epoch: Type.Optional(Epoch),
      d: Type.Optional(Type.Integer({ minimum: 1 })),
      m: Type.Optional(Type.Integer({ minimum: 1 })),
    },
    strict,
  ),
);
export type BudgetMessage = Static<typeof BudgetMessage>;

/** A device's transfer budget in its status reports: each period's budget and spend in bytes, and the writes (`wd`) and blobs (`wb`) waiting for lack of it. */
export const TransferReport = Type.Object(
  {
    ps: Type.Array(
      Type.Tuple([Type.Union([Type.Literal('day'), Type.Literal('month')]), Type.Integer({ minimum: 0 }), Type.Integer({ minimum: 0 })]),
      {
        maxItems: 2,
      },
    ),
    wd: Type.Integer({ minimum: 0 }),
    wb: Type.Integer({ minimum: 0 }),
  },
  strict,
);
