import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { Hub } from '../../hub/hub.js';
import type { ShedReason } from '../../hub/shed.js';
import { topics } from '../../shared/topics.js';
import { tempDir } from '../helpers/temp.js';

describe('persistent sessions', () => {
  let hub: Hub;
  afterEach(async () => hub.stop());

  it('a CONNECT with clean: false is refused (not authorized) and counted; the same client connecting clean is admitted', async () => {
    hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('session'), dev: true });
    const shed: ShedReason[] = [];
    hub.shedLog.on('shed', (reason) => shed.push(reason));
    const url = `mqtt://127.0.0.1:${hub.port}`;
    const refused = mqtt.connectAsync(url, { clientId: 'pi-1', clean: false, reconnectPeriod: 0, connectTimeout: 5_000 });
    await expect(refused).rejects.toMatchObject({ code: 5 });
    expect(shed).toEqual(['persistent_session']);

    const honest = await mqtt.connectAsync(url, { clientId: 'pi-1', clean: true, reconnectPeriod: 0 });
    await honest.subscribeAsync(topics.down('pi-1'), { qos: 1 });
    expect(hub.connectedAgents).toBe(1);
    await honest.endAsync(true);
  });
});
