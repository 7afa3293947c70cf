import { Agent, IncomingHttpHeaders, request as httpRequest } from 'node:http';

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json(): any;
}

export interface RequestOptions {
  /** Header values; an array sends the header once per element (separate lines). */
  headers?: Record<string, string | string[] | undefined>;
  /** An object is sent as JSON; a string or Buffer as it is. */
  body?: unknown;
  signal?: AbortSignal;
}

/**
 * A tiny HTTP/1.1 client over node:http, so tests control raw header lines.
 *
 * One connection per request (`Connection: close`), never a kept-alive one: a pooled socket the
 * server has just closed (its keep-alive timeout, 5 s on Express, passed while a test idled; Node's
 * agent keeps free sockets with no timeout of its own) is picked for the next request before its
 * FIN is read, and the request dies with `read ECONNRESET`. On a loaded machine such gaps are
 * common. Retrying would not do: a POST that may have reached the server cannot be resent in
 * tests that count executions.
 */
export class HttpClient {
  private readonly agent = new Agent({ keepAlive: false });

  constructor(readonly baseUrl: string) {}

  request(method: string, path: string, options: RequestOptions = {}): Promise<HttpResponse> {
    const url = new URL(path, this.baseUrl);
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(options.headers ?? {})) if (value !== undefined) headers[name] = value;
    let payload: Buffer | undefined;
    if (options.body !== undefined) {
      if (Buffer.isBuffer(options.body)) payload = options.body;
      else if (typeof options.body === 'string') payload = Buffer.from(options.body);
      else {
        payload = Buffer.from(JSON.stringify(options.body));
        headers['content-type'] ??= 'application/json';
      }
      headers['content-length'] = String(payload.length);
    }
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        {
          agent: this.agent,
          host: url.hostname,
          port: url.port,
          method,
          path: url.pathname + url.search,
          headers,
          signal: options.signal,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () => {
            const body = Buffer.concat(chunks);
            const text = body.toString('utf8');
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text, json: () => JSON.parse(text) });
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  post(path: string, options?: RequestOptions): Promise<HttpResponse> {
    return this.request('POST', path, options);
  }

  get(path: string, options?: RequestOptions): Promise<HttpResponse> {
    return this.request('GET', path, options);
  }

  close(): void {
    this.agent.destroy();
  }
}
