import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentStore } from '../../agent/store/agent-store.js';
import { Uploader } from '../../agent/uploader.js';
import { packAck } from '../../shared/acks.js';
import { encodeHlc } from '../../shared/hlc.js';
import type { BatchMessage } from '../../shared/messages.js';
import { tempDir } from '../helpers/temp.js';
import { encodeValue } from '../../shared/value-bytes.js';

const hlc = encodeHlc(Date.now(), 0);

describe('uploader', () => {
  let store: AgentStore;
  afterEach(() => store?.close());

  function setup(writes: number): { uploader: Uploader; sent: BatchMessage[1][] } {
    store = new AgentStore(tempDir('uploader'));
    store.outbox.append(
      Array.from({ length: writes }, (_, i) => ({
        partition: 'default',
        collection: 'x',
        key: `k${i}`,
        op: 'put' as const,
        value: encodeValue(i),
        hlc,
      })),
      hlc,
    );
    const sent: BatchMessage[1][] = [];
    const uploader = new Uploader(
      store,
      {
        send: (batch) => (sent.push(batch[1]), true),
        mayUpload: () => true,
        isReplicated: () => false,
        onAcked: () => undefined,
        onRejected: () => undefined,
      },
      { partition: 'default', maxBatchOps: 10, maxBatchBytes: 1 << 20, maxInFlight: 4, ackTimeoutMs: 60_000 },
      pino({ level: 'silent' }),
    );
    return { uploader, sent };
  }

  const ackOf = (batch: BatchMessage[1], firstLsn: number): Parameters<Uploader['onAck']>[0] => [
    'ack',
    packAck(
      batch.inc,
      hlc,
      batch.ops.map((op, i) => ({ seq: op.seq, outcome: 'committed' as const, lsn: firstLsn + i })),
    ),
  ];

  it('keeps up to four batches in flight and sends the next as each is acknowledged', () => {
    const { uploader, sent } = setup(60);
    uploader.start();
    expect(sent.map((b) => b.ops[0]!.seq)).toEqual([1, 11, 21, 31]);
    uploader.onAck(ackOf(sent[0]!, 1));
    expect(sent.map((b) => b.ops[0]!.seq)).toEqual([1, 11, 21, 31, 41]);
    expect(store.outbox.pendingCount()).toBe(50);
    uploader.stop();
  });

  it('resends at once when a later batch is acknowledged and an earlier one never was (its hub died)', () => {
    const { uploader, sent } = setup(40);
    uploader.start();
    expect(sent).toHaveLength(4);
    // Batches 1 and 2 went to a hub that died before acking; the new hub acks batch 3.
    uploader.onAck(ackOf(sent[2]!, 21));
    const resent = sent.slice(4);
    expect(resent[0]!.ops[0]!.seq, 'resent from the first unacknowledged write').toBe(1);
    uploader.onAck(ackOf(resent[0]!, 1));
    uploader.onAck(ackOf(resent[1]!, 11));
    uploader.onAck(ackOf(sent[3]!, 31));
    expect(store.outbox.pendingCount()).toBe(0);
    uploader.stop();
  });
});
