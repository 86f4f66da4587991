import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/ports.js';
import { CLI, devHubArgs, http, OutpostProcess } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

interface Status {
  connected: boolean;
  outboxDepth: number;
  appliedLsn: number;
}

describe('real processes started with the CLI', () => {
  const running: OutpostProcess[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((p) => p.kill()));
  });

  function start(args: string[]): OutpostProcess {
    const p = new OutpostProcess(args);
    running.push(p);
    return p;
  }

  it('one hub and two agents: write on A, read on B, through hub kill -9 and agent restart', async () => {
    const dir = tempDir('cli');
    const [mqttPort, hubHttp, aHttp, bHttp] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const hubArgs = devHubArgs(mqttPort, hubHttp, join(dir, 'hub'));
    const agentArgs = (id: string, port: number): string[] => [
      'agent',
      '--hub',
      `mqtt://127.0.0.1:${mqttPort}`,
      '--id',
      id,
      '--data',
      join(dir, id),
      '--http',
      `127.0.0.1:${port}`,
    ];
    const A = `http://127.0.0.1:${aHttp}`;
    const B = `http://127.0.0.1:${bHttp}`;

    let hub = start(hubArgs);
    await hub.waitForLog('hub started');
    expect(hub.output).toContain('DEVELOPMENT MODE');
    start(agentArgs('pi-1', aHttp));
    let b = start(agentArgs('pi-2', bHttp));
    await Promise.all([
      waitFor('A connected', async () => (await http<Status>('GET', `${A}/v1/status`)).body.connected),
      waitFor('B connected', async () => (await http<Status>('GET', `${B}/v1/status`)).body.connected),
    ]);

    const written = await http<{ lsn: number }>('PUT', `${A}/v1/docs/sensors/t1?durability=hub`, { celsius: 21.5 });
    expect(written).toMatchObject({ status: 200, body: { lsn: 1 } });
    expect((await http('GET', `${B}/v1/docs/sensors/t1?minLsn=${written.body.lsn}`)).status).toBe(200);
    expect((await http('GET', `${B}/v1/docs/sensors/t1`)).body).toMatchObject({ value: { celsius: 21.5 }, version: 1 });

    // Hub killed outright; A keeps accepting writes; B is stopped too.
    await hub.kill('SIGKILL');
    await b.kill('SIGTERM');
    for (let i = 0; i < 20; i++) expect((await http('PUT', `${A}/v1/docs/sensors/s${i}`, { i })).status).toBe(200);
    expect((await http('DELETE', `${A}/v1/docs/sensors/t1`)).status).toBe(200);
    expect((await http<Status>('GET', `${A}/v1/status`)).body.outboxDepth).toBe(21);

    hub = start(hubArgs);
    await hub.waitForLog('hub started');
    await waitFor('A outbox drained', async () => (await http<Status>('GET', `${A}/v1/status`)).body.outboxDepth === 0, 20_000);
    const onHub = await http<{ head: number }>('GET', `http://127.0.0.1:${hubHttp}/v1/status`);
    expect(onHub.body.head).toBe(22); // 1 + 20 + 1, each exactly once

    b = start(agentArgs('pi-2', bHttp));
    await waitFor('B caught up', async () => (await http<Status>('GET', `${B}/v1/status`)).body.appliedLsn === 22, 20_000);
    expect((await http('GET', `${B}/v1/docs/sensors/s19`)).body).toMatchObject({ value: { i: 19 } });
    expect((await http('GET', `${B}/v1/docs/sensors/t1`)).status).toBe(404);
    const list = await http<{ docs: unknown[] }>('GET', `${B}/v1/docs/sensors?limit=100`);
    expect(list.body.docs).toHaveLength(20);
  });

  it('bad requests get typed errors from the agent HTTP API', async () => {
    const dir = tempDir('cli');
    const [mqttPort, aHttp] = await Promise.all([freePort(), freePort()]);
    const a = start([
      'agent',
      '--hub',
      `mqtt://127.0.0.1:${mqttPort}`,
      '--id',
      'pi-x',
      '--data',
      join(dir, 'a'),
      '--http',
      `127.0.0.1:${aHttp}`,
    ]);
    await a.waitForLog('agent started');
    const A = `http://127.0.0.1:${aHttp}`;
    expect(await http('PUT', `${A}/v1/docs/Bad%20Name/k`, { v: 1 })).toMatchObject({
      status: 400,
      body: { code: 'OUTPOST_INVALID_COLLECTION' },
    });
    expect(await http('PATCH', `${A}/v1/docs/ok/k`, [1, 2])).toMatchObject({ status: 400, body: { code: 'OUTPOST_INVALID_VALUE' } });
    expect(await http('PUT', `${A}/v1/docs/ok/k`, 'x'.repeat(300 * 1024))).toMatchObject({
      status: 400,
      body: { code: 'OUTPOST_VALUE_TOO_LARGE' },
    });
    expect(await http('GET', `${A}/v1/docs/ok/missing`)).toMatchObject({ status: 404, body: { code: 'OUTPOST_NOT_FOUND' } });
    // Offline from the start, writes are still accepted and queued.
    expect((await http('PUT', `${A}/v1/docs/ok/k`, { v: 1 })).status).toBe(200);
    expect((await http<Status>('GET', `${A}/v1/status`)).body).toMatchObject({ connected: false, outboxDepth: 1 });
    // Waiting for the hub while offline: a timeout that says the write stays queued.
    expect(await http('PUT', `${A}/v1/docs/ok/k2?durability=hub&timeoutMs=200`, { v: 2 })).toMatchObject({
      status: 504,
      body: { code: 'OUTPOST_DURABILITY_TIMEOUT', seq: 2 },
    });
    expect((await http<Status>('GET', `${A}/v1/status`)).body).toMatchObject({ outboxDepth: 2 });
    expect(await http('PUT', `${A}/v1/docs/ok/k?durability=eventually`, 1)).toMatchObject({
      status: 400,
      body: { code: 'OUTPOST_INVALID_HEADER' },
    });
    expect(await http('GET', `${A}/v1/docs/ok/k?minLsn=5&timeoutMs=100`)).toMatchObject({
      status: 504,
      body: { code: 'OUTPOST_READ_TIMEOUT' },
    });
  });

  it('drives a running agent from the command line: put, get, ls, del, status, sync, for people and with --json', async () => {
    const dir = tempDir('cli');
    const [mqttPort, aHttp] = await Promise.all([freePort(), freePort()]);
    const hub = start(['hub', '--dev', '--port', String(mqttPort), '--host', '127.0.0.1', '--data', join(dir, 'hub')]);
    await hub.waitForLog('hub started');
    const agent = start([
      'agent',
      '--hub',
      `mqtt://127.0.0.1:${mqttPort}`,
      '--id',
      'pi-cli',
      '--data',
      join(dir, 'a'),
      '--http',
      `127.0.0.1:${aHttp}`,
      '--token',
      'tok',
    ]);
    await agent.waitForLog('agent started');
    const cli = (...args: string[]): string =>
      execFileSync(process.execPath, [CLI, 'agent', ...args, '--url', `http://127.0.0.1:${aHttp}`, '--token', 'tok'], { encoding: 'utf8' });

    expect(cli('put', 'sensors', 't1', '{"celsius": 21.5}', '--durability', 'hub')).toMatch(/stored as write 1, committed at LSN 1/);
    expect(JSON.parse(cli('get', 'sensors', 't1', '--json'))).toMatchObject({ value: { celsius: 21.5 }, version: 1 });
    cli('put', 'sensors', 't2', '22');
    expect(cli('ls', 'sensors')).toMatch(/t1\s+1\s+\{"celsius":21\.5\}/);
    expect(cli('del', 'sensors', 't2')).toMatch(/deleted \(write 3\)/);
    expect(cli('sync')).toMatch(/synced: nothing pending/);
    const status = JSON.parse(cli('status', '--json')) as { connected: boolean; outboxDepth: number; collections: Record<string, unknown> };
    expect(status).toMatchObject({ connected: true, outboxDepth: 0 });
    expect(cli('status')).toMatch(/agent pi-cli: connected, 0 pending/);
    // Errors are the API's, said plainly, with a non-zero exit.
    let failure = '';
    try {
      cli('put', 'Bad Name', 'k', '1');
    } catch (error) {
      failure = String((error as { stderr: string }).stderr);
    }
    expect(failure).toMatch(/OUTPOST_INVALID_COLLECTION/);
  });
});
