/**
 * A bare aedes broker in its own process and nothing else: the floor the propagation benchmark
 * holds the hub against. Same transport set-up as the hub's listener (no Nagle delay); prints
 * `port <n>` once listening. Run: node --import tsx bench/broker-process.ts
 */
import { Aedes } from 'aedes';
import { createServer, type AddressInfo } from 'node:net';

const broker = await Aedes.createBroker();
const server = createServer((socket) => {
  socket.setNoDelay(true);
  broker.handle(socket);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`port ${(server.address() as AddressInfo).port}\n`));
process.on('SIGTERM', () => broker.close(() => server.close(() => process.exit(0))));
