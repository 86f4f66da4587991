import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { createAgentHttp, servedRoutes } from '../../agent/http.js';
import type { openApiDocument } from '../../agent/openapi.js';
import { TestFleet } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

describe('device HTTP API: change feed, token, metrics, OpenAPI', () => {
  let fleet: TestFleet;
  let close: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await close?.();
    await fleet.close();
  });

  async function serve(token?: string): Promise<{ url: string; routes: string[]; agent: ReturnType<TestFleet['agent']> }> {
    fleet = new TestFleet();
    await fleet.startHub();
    const agent = fleet.agent('pi-api');
    const app = await createAgentHttp(agent, pino({ level: 'silent' }), token === undefined ? {} : { token });
    await app.listen({ host: '127.0.0.1', port: 0 });
    close = () => app.close();
    const { port } = app.server.address() as { port: number };
    return { url: `http://127.0.0.1:${port}`, routes: [...servedRoutes.get(app)!], agent };
  }

  it('streams committed changes as Server-Sent Events, optionally of one collection', async () => {
    const { url, agent } = await serve();
    const controller = new AbortController();
    const response = await fetch(`${url}/v1/changes?collection=alarms`, { signal: controller.signal });
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    const events: string[] = [];
    const reading = (async () => {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) events.push(Buffer.from(chunk).toString());
    })().catch(() => undefined);
    await agent.put('notes', 'n', 1);
    await agent.put('alarms', 'fire', { on: true });
    await waitFor('a change event', () => events.join('').includes('event: change'));
    const text = events.join('');
    expect(text).toMatch(/event: change\ndata: \{"lsn":2,"c":"alarms","k":"fire"/);
    expect(text).not.toContain('"c":"notes"');
    controller.abort();
    await reading;
  });

  it('requires the bearer token when one is set', async () => {
    const { url } = await serve('s3cret');
    expect((await fetch(`${url}/v1/status`)).status).toBe(401);
    expect(await (await fetch(`${url}/v1/status`, { headers: { authorization: 'Bearer wrong!' } })).json()).toMatchObject({
      code: 'OUTPOST_UNAUTHORIZED',
    });
    expect((await fetch(`${url}/v1/status`, { headers: { authorization: 'Bearer s3cret' } })).status).toBe(200);
  });

  it('exposes Prometheus metrics with conventional names', async () => {
    const { url, agent } = await serve();
    await agent.put('notes', 'n', 1, { durability: 'hub' });
    await waitFor('applied', async () => (await agent.get('notes', 'n', { confirmed: true })) !== undefined);
    const text = await (await fetch(`${url}/metrics`)).text();
    expect(text).toMatch(/^outpost_agent_connected 1$/m);
    expect(text).toMatch(/^outpost_agent_outbox_depth 0$/m);
    expect(text).toMatch(/^outpost_agent_applied_lsn\{collection="notes"\} 1$/m);
    expect(text).toMatch(/^outpost_agent_changes_applied_total \d+$/m);
    expect(text).toMatch(/^outpost_agent_process_resident_memory_bytes \d+/m);
  });

  it('describes every route it serves in its OpenAPI document', async () => {
    const { url, routes } = await serve();
    const served = (await (await fetch(`${url}/v1/openapi.json`)).json()) as typeof openApiDocument;
    const described = Object.entries(served.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
    );
    expect(routes.length).toBeGreaterThan(8);
    for (const route of routes) expect(described, route).toContain(route);
    for (const route of described) expect(routes, route).toContain(route);
  });
});
