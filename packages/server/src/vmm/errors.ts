/** Errors of the microVM manager: each carries the HTTP status and a stable code the `/v1` routes send back. */
export class VmmError extends Error {
  override name = 'VmmError';
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const notFound = (what: string) => new VmmError(404, 'not_found', `${what} does not exist`);
export const conflict = (message: string) => new VmmError(409, 'conflict', message);
export const badRequest = (message: string) => new VmmError(400, 'invalid_request', message);
/** A configured limit (MAX_VMS, MAX_CPU, …) refused the request; the message names the limit. */
export const limitExceeded = (message: string, status = 400) => new VmmError(status, 'limit_exceeded', message);
