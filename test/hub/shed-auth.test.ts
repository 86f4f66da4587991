import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { HubUnderAttack } from '../helpers/hub-under-attack.js';
import { sleep } from '../helpers/wait.js';

/** One login attempt: how the hub answered (the CONNACK's refusal, `accepted`, or `closed` without one) and how long it took. */
function login(url: string, clientId: string, token: string): Promise<{ answer: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const client = mqtt.connect(url, { clientId, username: clientId, password: token, reconnectPeriod: 0, connectTimeout: 3_000 });
    const settle = (answer: string): void => {
      client.removeAllListeners();
      client.on('error', () => undefined);
      client.end(true);
      resolve({ answer, ms: Date.now() - started });
    };
    client.once('connect', () => settle('accepted'));
    client.once('error', (error) => settle(error.message));
    client.once('close', () => settle('closed'));
  });
}

/** A login that is checked, not refused for backoff: retried while the hub says it is unavailable. */
async function checkedLogin(url: string, clientId: string, token: string): Promise<{ answer: string; ms: number }> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const attempt = await login(url, clientId, token);
    if (!/unavailable/i.test(attempt.answer) || Date.now() > deadline) return attempt;
    await sleep(100);
  }
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

describe('a hub under attack: logins with a wrong token', () => {
  let bench: HubUnderAttack | undefined;
  afterEach(async () => {
    await bench?.stop();
    bench = undefined;
  });

  it('answers an unknown agent id exactly as a wrong token, after the same scrypt work: ids cannot be enumerated', async () => {
    // A short backoff, so that each attempt below is checked rather than refused unchecked.
    bench = await HubUnderAttack.start(['--auth-backoff-max-seconds', '1']);
    const wrong = 'opt_' + 'A'.repeat(43);
    const unknown: number[] = [];
    const known: number[] = [];
    for (let i = 0; i < 4; i++) {
      const forUnknown = await checkedLogin(bench.mqttUrl, `pi-nobody-${i}`, wrong);
      const forKnown = await checkedLogin(bench.mqttUrl, 'pi-1', wrong);
      expect(forUnknown.answer).toMatch(/Bad username or password/i);
      expect(forKnown.answer).toMatch(/Bad username or password/i);
      unknown.push(forUnknown.ms);
      known.push(forKnown.ms);
    }
    // The same timing class: an answer without scrypt would take a few ms, one with it tens. The
    // fastest known-id answer is the measure of scrypt's work: on a busy machine any one answer
    // may take several times that (a median of four once did).
    expect(median(unknown), `unknown ids ${unknown.join(',')} ms; known ids ${known.join(',')} ms`).toBeGreaterThan(Math.min(...known) / 2);
    await bench.expectHealthy();
  }, 60_000);

  it('bounds the scrypt work of wrong-token logins from one address: it backs off, refused unchecked, and legit agents keep their latency', async () => {
    bench = await HubUnderAttack.start();
    await bench.startLoad(20, 1024);
    const url = bench.mqttUrl;
    const wrong = 'opt_' + 'B'.repeat(43);
    // Logins with a wrong token for a known id, at the permitted connection rate (200 per 10 s),
    // for 5 s: each would cost ~50 ms of scrypt, about a core in all.
    const cpuBefore = bench.cpuSeconds();
    const started = Date.now();
    const answers: string[] = [];
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (Date.now() - started < 5_000) {
          answers.push((await login(url, 'pi-1', wrong)).answer);
          await sleep(200);
        }
      }),
    );
    const seconds = (Date.now() - started) / 1000;
    const cores = (bench.cpuSeconds() - cpuBefore) / seconds;
    expect(answers.length, 'login attempts made').toBeGreaterThan(40);
    expect(answers.filter((a) => /Bad username/i.test(a)).length, 'attempts checked with scrypt').toBeLessThan(12);
    expect(cores, 'hub CPU (cores) during the attack').toBeLessThan(0.45);
    expect(await bench.shed('auth_backoff')).toBeGreaterThan(0);
    await bench.expectHealthy();
  }, 60_000);

  it('checks at most four logins of one address at a time, and none queued behind its first failure', async () => {
    bench = await HubUnderAttack.start();
    await bench.startLoad(20, 1024);
    const wrong = 'opt_' + 'C'.repeat(43);
    // 40 wrong-token logins from one address at once. Unbounded, all of them were checked
    // (40 scrypt runs) before the first failure started the address's backoff.
    const answers = await Promise.all(Array.from({ length: 40 }, () => login(bench!.mqttUrl, 'pi-1', wrong)));
    const checked = answers.filter((a) => /Bad username/i.test(a.answer)).length;
    expect(checked, `answers: ${answers.map((a) => a.answer).join('; ')}`).toBeGreaterThanOrEqual(1);
    expect(checked).toBeLessThanOrEqual(4);
    expect(answers.filter((a) => /unavailable/i.test(a.answer)).length).toBe(40 - checked);
    expect((await bench.shed('auth_busy')) + (await bench.shed('auth_backoff'))).toBeGreaterThanOrEqual(40 - checked);
    await bench.expectHealthy();
  }, 60_000);
});
