/**
 * Ingest throughput, end to end (outbox → MQTT → hub commit → ack), against two references
 * measured in the same run: the limit (raw better-sqlite3 appending the same rows to a log table
 * and upserting a documents table in large transactions, synchronous=FULL) and the naive way
 * (every write its own JSON MQTT QoS 1 message and its own hub transaction).
 */
import Database from 'better-sqlite3';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Agent } from '../agent/agent.js';
import { encodeCbor } from '../shared/codec.js';
import { freePort } from '../test/helpers/ports.js';
import { committedHead } from './hub-db.js';
import { startHubProcess } from './hub-process.js';
import { tempDir } from './temp.js';

export interface IngestResult {
  outpost: number;
  raw: number;
  naive: number;
}

const value = (a: number, i: number): { celsius: number; at: number; sensor: string } => ({
  celsius: 20 + (i % 50) / 10,
  at: 1_764_000_000_000 + i,
  sensor: `s-${a}`,
});

/**
 * Writes per second through real agents and a real hub. The hub runs in its own process, as it
 * is deployed, so the agents' work does not share its event loop; the agents replicate only a
 * config collection, as sensors do, so they do not apply each other's telemetry. Progress is read
 * from the hub's database (a WAL reader does not block the writer).
 */
async function outpost(agents: number, perAgent: number): Promise<number> {
  const dir = tempDir('bench-ingest');
  const port = await freePort();
  const fleet = Array.from({ length: agents }, (_, a) =>
    new Agent({
      hubUrl: `mqtt://127.0.0.1:${port}`,
      agentId: `pi-${a}`,
      dataDir: join(dir, `pi-${a}`),
      collections: ['config'],
      reconnect: { initialMs: 20, maxMs: 50 },
    }).start(),
  );
  // The agents fill their outboxes while the hub is down.
  await Promise.all(
    fleet.map(async (agent, a) => {
      for (let i = 0; i < perAgent; i += 500) {
        await Promise.all(
          Array.from({ length: Math.min(500, perAgent - i) }, (_, j) => agent.put('telemetry', `${a}-${i + j}`, value(a, i + j))),
        );
      }
    }),
  );
  // The clock starts when the hub listens: node's own start-up is not ingest.
  const hub = await startHubProcess(join(dir, 'hub'), [], { port });
  const started = performance.now();
  const head = await committedHead(join(dir, 'hub', 'hub.db'), agents * perAgent);
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(fleet.map((a) => a.close()));
  await hub.stop();
  return head / seconds;
}

/** The limit: the same rows straight into SQLite, in large transactions, synchronous=FULL. */
function raw(total: number, agents: number): number {
  const db = new Database(join(tempDir('bench-raw'), 'raw.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(`CREATE TABLE log (lsn INTEGER PRIMARY KEY, collection TEXT, key TEXT, op TEXT, value BLOB, hlc TEXT, origin TEXT, incarnation TEXT, seq INTEGER, committed_at INTEGER);
           CREATE TABLE documents (collection TEXT, key TEXT, value BLOB, deleted INTEGER, version INTEGER, hlc TEXT, origin TEXT, PRIMARY KEY (collection, key)) WITHOUT ROWID;`);
  const log = db.prepare('INSERT INTO log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
  const doc = db.prepare(
    `INSERT INTO documents VALUES (?, ?, ?, 0, ?, ?, ?) ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value, version = excluded.version`,
  );
  const batch = db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const a = i % agents;
      const bytes = encodeCbor(value(a, i));
      log.run(i + 1, 'telemetry', `${a}-${i}`, 'put', bytes, '0000000000000000', `pi-${a}`, 'x', i + 1, Date.now());
      doc.run('telemetry', `${a}-${i}`, bytes, i + 1, '0000000000000000', `pi-${a}`);
    }
  });
  const started = performance.now();
  for (let i = 0; i < total; i += 5000) batch.immediate(i, Math.min(total, i + 5000));
  const seconds = (performance.now() - started) / 1000;
  db.close();
  return total / seconds;
}

/** The naive way: one JSON message per write, QoS 1, each committed in its own transaction. */
async function naive(total: number): Promise<number> {
  const db = new Database(join(tempDir('bench-naive'), 'naive.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(
    'CREATE TABLE documents (collection TEXT, key TEXT, value TEXT, PRIMARY KEY (collection, key)) WITHOUT ROWID; CREATE TABLE log (lsn INTEGER PRIMARY KEY, key TEXT, value TEXT)',
  );
  const write = db.transaction((key: string, body: string) => {
    db.prepare('INSERT INTO log (key, value) VALUES (?, ?)').run(key, body);
    db.prepare('INSERT INTO documents VALUES (?, ?, ?) ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value').run(
      'telemetry',
      key,
      body,
    );
  });
  const broker = await Aedes.createBroker();
  let committed = 0;
  broker.on('publish', (packet, client) => {
    if (!client) return;
    write.immediate(packet.topic, packet.payload.toString());
    committed += 1;
  });
  const server = createServer(broker.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`, { clientId: 'naive' });
  const started = performance.now();
  await Promise.all(
    Array.from({ length: total }, (_, i) => client.publishAsync(`naive/telemetry/${i}`, JSON.stringify(value(0, i)), { qos: 1 })),
  );
  while (committed < total) await new Promise((resolve) => setTimeout(resolve, 5));
  const seconds = (performance.now() - started) / 1000;
  await client.endAsync();
  await new Promise<void>((resolve) => broker.close(() => resolve()));
  server.close();
  db.close();
  return total / seconds;
}

export async function benchIngest(quick: boolean): Promise<IngestResult> {
  const agents = quick ? 2 : 10;
  const perAgent = quick ? 500 : 5_000;
  const total = agents * perAgent;
  return { outpost: await outpost(agents, perAgent), raw: raw(total, agents), naive: await naive(quick ? 500 : 5_000) };
}
