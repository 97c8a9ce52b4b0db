import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The connection of the agent whose hook call is being served, as a signal aborted when the agent hangs up. A call
 * held while its branch is paused must not be recorded after its caller gave up: the client sends it again, and the
 * trace would hold it twice. Routes set it around each call (whileCallerConnected); the service reads it where it
 * waits (callerSignal). Kept out of every method's parameters because only the wait needs it.
 */
const connection = new AsyncLocalStorage<AbortSignal>();

export function whileCallerConnected<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
  return connection.run(signal, fn);
}

/** The signal of the call being served; undefined outside a route (a call from the server itself). */
export function callerSignal(): AbortSignal | undefined {
  return connection.getStore();
}
