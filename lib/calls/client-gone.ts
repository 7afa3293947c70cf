/** Node's `ServerResponse`, as far as telling whether its client went away goes. @internal */
export interface RawResponse {
  readonly destroyed: boolean;
  readonly writableFinished: boolean;
  once(event: 'close', listener: () => void): unknown;
}

/** Aborts when the client's connection closes before its response was sent (it stopped waiting). @internal */
export function signalWhenClientGone(raw: RawResponse): AbortSignal {
  const controller = new AbortController();
  if (raw.destroyed && !raw.writableFinished) controller.abort();
  else
    raw.once('close', () => {
      if (!raw.writableFinished) controller.abort();
    });
  return controller.signal;
}

/** Whether `value` is a Node response. @internal */
export function isRawResponse(value: unknown): value is RawResponse {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as RawResponse).once === 'function' &&
    typeof (value as RawResponse).writableFinished === 'boolean'
  );
}
