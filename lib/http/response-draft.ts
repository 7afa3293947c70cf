import type { ResponseSnapshot } from './reply-guard';

/**
 * A stand-in for a response that has already been sent by someone else (an outer interceptor
 * answered the client before the handler finished): it starts from the status and headers the
 * handler had set up, and offers the parts of the Express `Response` and `FastifyReply` APIs the
 * platforms use to turn a value into a payload, so the handler's result can still be captured and
 * stored exactly as it would have been sent.
 * @internal
 */
export class ResponseDraft {
  statusCode: number;
  readonly headersSent = false;
  readonly sent = false;
  readonly #headers = new Map<string, string>();
  /** Express reads its JSON settings here. */
  readonly app: { get(setting: string): unknown };

  constructor(snapshot: ResponseSnapshot, original: unknown) {
    this.statusCode = snapshot.statusCode;
    for (const [name, value] of Object.entries(snapshot.headers)) {
      if (value !== undefined && value !== null) {
        this.#headers.set(name.toLowerCase(), Array.isArray(value) ? value.join(', ') : String(value));
      }
    }
    const app = (original as { app?: { get?: unknown } } | null)?.app;
    this.app = typeof app?.get === 'function' ? (app as { get(setting: string): unknown }) : { get: () => undefined };
  }

  getHeader(name: string): string | undefined {
    return this.#headers.get(name.toLowerCase());
  }

  setHeader(name: string, value: string): this {
    this.#headers.set(name.toLowerCase(), String(value));
    return this;
  }

  /** Express `res.get`. */
  get(name: string): string | undefined {
    return this.getHeader(name);
  }

  /** Express `res.set`. */
  set(name: string, value: string): this {
    return this.setHeader(name, value);
  }

  /** Fastify `reply.header`. */
  header(name: string, value: string): this {
    return this.setHeader(name, value);
  }

  status(statusCode: number): this {
    this.statusCode = statusCode;
    return this;
  }

  code(statusCode: number): this {
    return this.status(statusCode);
  }
}
