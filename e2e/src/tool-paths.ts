/** Paths of the compiled tools that tests and benchmarks start inside hosts. */
import { fileURLToPath } from 'node:url';

/** Seeded byte stream with sha256: `send` and `sink` (see tools/stream.ts). */
export const STREAM_TOOL: string = fileURLToPath(new URL('./tools/stream.js', import.meta.url));
/** A primary's south-side wrap alone, in record mode (see tools/ssw-record.ts). */
export const SSW_RECORD_TOOL: string = fileURLToPath(new URL('./tools/ssw-record.js', import.meta.url));
/** Client of an echo server checking both directions and the failover gap (see tools/echo-client.ts). */
export const ECHO_CLIENT_TOOL: string = fileURLToPath(new URL('./tools/echo-client.js', import.meta.url));
/** The epoll echo server in C, `echod ADDR PORT [-v]` (native/echod.c; built by scripts/build-native.mjs). */
export const ECHOD_BIN: string = fileURLToPath(new URL('../../native/build/echod', import.meta.url));
/** The `ftcp` launcher of this checkout. */
export const FTCP_BIN: string = fileURLToPath(new URL('../../../bin/ftcp', import.meta.url));
/** Pipelined `INCR` client of redis checking every reply (see tools/redis-incr-client.ts). */
export const REDIS_INCR_CLIENT_TOOL: string = fileURLToPath(new URL('./tools/redis-incr-client.js', import.meta.url));
/** HTTP/1.0 GET over TCP or TLS checking the body's length and sha256 (see tools/fetch-client.ts). */
export const FETCH_CLIENT_TOOL: string = fileURLToPath(new URL('./tools/fetch-client.js', import.meta.url));
/** Polls a stable buffer's status from inside a host, one JSON line per poll (see tools/buffer-status.ts). */
export const BUFFER_STATUS_TOOL: string = fileURLToPath(new URL('./tools/buffer-status.js', import.meta.url));
