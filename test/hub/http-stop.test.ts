import { existsSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { Hub } from '../../hub/hub.js';
import { HTTP_CLOSE_GRACE_MS } from '../../shared/http-close.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

describe('stopping the hub', () => {
  it('is not held by an HTTP client stalled in the middle of a request', async () => {
    const dataDir = join(tempDir('http-stop'), 'hub');
    const hub = await Hub.start({ port: 0, host: '127.0.0.1', dev: true, dataDir, http: { host: '127.0.0.1', port: 0 } });
    const spool = join(dataDir, 'content', 'spool');
    const { hostname, port } = new URL(hub.httpAddress!);
    const client = connect(Number(port), hostname);
    await new Promise((resolve) => client.once('connect', resolve));
    let cut = false;
    client.once('close', () => (cut = true));
    // A body announced and half sent, as by an uploader whose link went quiet mid-upload.
    client.write(
      'PUT /v1/blobs/firmware/v1 HTTP/1.1\r\nhost: hub\r\ncontent-type: application/octet-stream\r\ncontent-length: 1000000\r\n\r\n',
    );
    client.write(Buffer.alloc(10_000));
    await waitFor('the hub to be receiving the body', () => existsSync(spool) && readdirSync(spool).length === 1);
    let stopped = false;
    void hub.stop().then(() => (stopped = true));
    await waitFor('the stop', () => stopped, HTTP_CLOSE_GRACE_MS + 10_000);
    await waitFor("the stalled client's connection to be cut", () => cut, 1_000);
    await waitFor('the half-received body to be cleared', () => readdirSync(spool).length === 0);
  }, 30_000);
});
