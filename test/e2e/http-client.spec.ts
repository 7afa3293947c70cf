import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpClient } from './http-client';

describe('the e2e HttpClient', () => {
  it('opens a connection per request and never reuses one the server may be closing (no keep-alive race)', async () => {
    const seen: IncomingHttpHeaders[] = [];
    let connections = 0;
    const server = createServer((req, res) => {
      seen.push(req.headers);
      req.resume().on('end', () => res.end('ok'));
    });
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = new HttpClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      for (let i = 0; i < 3; i++) expect((await client.post('/', { body: { i } })).text).toBe('ok');
      expect(connections).toBe(3);
      expect(seen.map((h) => h.connection)).toEqual(['close', 'close', 'close']);
    } finally {
      client.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
