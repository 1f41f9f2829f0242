/**
 * Every error a client can see carries its HTTP status, a stable `type` and a message that says
 * what went wrong and what to do. The central error handler turns them into
 * `{"type", "loc", "msg"}`.
 */
export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly type: string,
    message: string,
    readonly loc: (string | number)[] = [],
    options?: ErrorOptions & { headers?: Record<string, string> },
  ) {
    super(message, options);
    this.name = new.target.name;
    this.headers = options?.headers;
  }
  readonly headers: Record<string, string> | undefined;
}

/** Kentik answered with an error status; we pass on its status and message. */
export class KentikApiError extends AppError {
  constructor(
    readonly upstreamStatus: number,
    message: string,
    options?: ErrorOptions,
  ) {
    super(upstreamStatus, 'Kentik API error', message, ['upstream'], options);
  }
}

/** Kentik could not be reached or did not answer in time, after every retry. */
export class KentikUnavailableError extends AppError {
  constructor(message: string, options?: ErrorOptions) {
    super(504, 'Kentik API unavailable', message, ['upstream'], options);
  }
}

/** Kentik answered 200 with something that is not a chart we can serve. */
export class KentikBadResponseError extends AppError {
  constructor(message: string, options?: ErrorOptions) {
    super(502, 'Kentik API bad response', message, ['upstream'], options);
  }
}

/** The image could not be stored (disk full, permissions…). */
export class StorageError extends AppError {
  constructor(message: string, options?: ErrorOptions) {
    super(507, 'Insufficient storage', message, ['storage'], options);
  }
}
