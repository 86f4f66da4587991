import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { HUB_OPTIONS } from '../../cli/tables.js';

/**
 * deploy/ha/compose.yaml: PostgreSQL, Mosquitto and two hubs. There is no container engine on
 * the test machines, so this holds the file to what the hub actually reads; the failover itself
 * is proven with real processes in test/hub/failover.test.ts.
 */
const FILE = fileURLToPath(new URL('../../deploy/ha/compose.yaml', import.meta.url));
interface Service {
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  depends_on?: Record<string, unknown>;
  ports?: string[];
}
const compose = parse(readFileSync(FILE, 'utf8'), { merge: true }) as { services: Record<string, Service> };
const envOf = (key: string): string => `OUTPOST_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

describe('the high-availability compose file', () => {
  it('runs PostgreSQL, Mosquitto and two hubs', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['hub-a', 'hub-b', 'mosquitto', 'postgres']);
    expect(compose.services.postgres!.image).toMatch(/^postgres:15/);
    expect(compose.services.mosquitto!.image).toMatch(/^eclipse-mosquitto:2/);
  });

  it('points both hubs at the same store and broker, through variables the hub reads', () => {
    const known = new Set(HUB_OPTIONS.map((o) => envOf(o.key)));
    for (const name of ['hub-a', 'hub-b']) {
      const hub = compose.services[name]!;
      expect(hub.environment!.OUTPOST_STORE).toMatch(/^postgres:\/\/outpost:\$\{POSTGRES_PASSWORD:\?[^}]+\}@postgres:5432\/outpost$/);
      expect(hub.environment!.OUTPOST_BROKER).toBe('mqtt://mosquitto:1883');
      for (const variable of Object.keys(hub.environment!)) expect(known, `${name}: ${variable}`).toContain(variable);
      expect(hub.depends_on).toHaveProperty('postgres');
    }
    expect(compose.services['hub-a']!.environment).toEqual(compose.services['hub-b']!.environment);
  });

  it('has Mosquitto run the files `outpost hub export mosquitto` writes', () => {
    const mosquitto = compose.services.mosquitto!;
    expect(mosquitto.command).toEqual(['mosquitto', '-c', '/etc/mosquitto/outpost/mosquitto.conf']);
    expect(mosquitto.volumes).toContain('mosquitto-config:/etc/mosquitto/outpost:ro');
    expect(compose.services['hub-a']!.volumes).toContain('mosquitto-config:/etc/mosquitto/outpost');
  });

  it('requires every secret instead of defaulting it', () => {
    const text = readFileSync(FILE, 'utf8');
    for (const secret of ['POSTGRES_PASSWORD', 'OUTPOST_BROKER_PASSWORD', 'OUTPOST_ADMIN_TOKEN'])
      expect(text).toMatch(new RegExp(`\\$\\{${secret}:\\?`));
  });
});
