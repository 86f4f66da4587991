import mqtt, { type MqttClient } from 'mqtt';
import { downCodec } from '../../shared/codec.js';
import type { DownMessage } from '../../shared/messages.js';
import { topics } from '../../shared/topics.js';

/** A bare MQTT client speaking to the hub directly, to send what no honest agent would. */
export class RawClient {
  readonly received: DownMessage[] = [];
  closed = false;

  private constructor(
    readonly client: MqttClient,
    readonly id: string,
  ) {
    client.on('message', (topic, payload) => {
      if (topic === topics.down(id)) this.received.push(downCodec.decode(payload));
    });
    client.on('close', () => {
      this.closed = true;
    });
  }

  static async connect(port: number, id: string): Promise<RawClient> {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: id, reconnectPeriod: 0, clean: true });
    const raw = new RawClient(client, id);
    await client.subscribeAsync(topics.down(id), { qos: 1 });
    return raw;
  }

  async publish(topic: string, payload: Buffer | Uint8Array): Promise<void> {
    await this.client.publishAsync(topic, Buffer.from(payload), { qos: 1 });
  }

  async end(): Promise<void> {
    await this.client.endAsync(true);
  }
}
