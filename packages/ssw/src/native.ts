/**
 * Loader of the native addon (`native/src/addon.cc`): NFQUEUE, raw sockets
 * and link-layer frames, nothing else. Loaded on first use, so the pure parts of this
 * package work where the addon is not built.
 */
import { createRequire } from 'node:module';
import { FtcpError } from '@ftcp/stable-buffer';
import { SswErrorCode } from './errors.js';

/**
 * A batch of packets as the addon hands it over: seven values a packet, in
 * arrival order: id, hook, mark, skbInfo (numbers), then the packet's bytes
 * as a range of a receive slab: the slab (an ArrayBuffer), offset, length.
 * No byte of a slab is written again while the ArrayBuffer lives.
 */
export type NativeBatch = (number | ArrayBuffer)[];

/** The addon's queue object. */
export interface NativeQueue {
  verdict(id: number, verdict: number, mark?: number, payload?: Uint8Array): void;
  verdictBatch(id: number, verdict: number, mark?: number): void;
  close(): void;
  ref(): void;
  unref(): void;
  stats(): { enobufs: number; recvErrors: number; lost: number };
}

/** The addon's raw socket object. */
export interface NativeRawSocket {
  send(packet: Uint8Array): number;
  close(): void;
}

/** A network device as the addon reports it. */
export interface NativeLinkAddress {
  index: number;
  /** ARPHRD_* type (1 is Ethernet). */
  hwType: number;
  /** The first 6 bytes of the hardware address. */
  address: Buffer;
}

/** The addon's exports. */
export interface NativeAddon {
  Queue: new (
    num: number,
    copyRange: number,
    maxLen: number,
    gso: boolean,
    failOpen: boolean,
    onBatch: (batch: NativeBatch) => void,
  ) => NativeQueue;
  RawSocket: new (mark: number) => NativeRawSocket;
  linkAddress(ifname: string): NativeLinkAddress;
  sendFrame(ifindex: number, frame: Uint8Array): number;
  routeRequest(message: Uint8Array): Buffer;
  NF_DROP: number;
  NF_ACCEPT: number;
  NF_REPEAT: number;
  SKB_CSUMNOTREADY: number;
  SKB_GSO: number;
  SKB_CSUM_NOTVERIFIED: number;
}

let addon: NativeAddon | undefined;

/**
 * The native addon, loaded once from `native/build/Release/ftcp_ssw.node`.
 * @throws FtcpError `FTCP_ERR_NATIVE_UNAVAILABLE` when it is not built.
 */
export function loadNative(): NativeAddon {
  if (addon !== undefined) return addon;
  const require = createRequire(import.meta.url);
  try {
    // dist/src/native.js -> ../../native/build/Release
    addon = require('../../native/build/Release/ftcp_ssw.node') as NativeAddon;
  } catch (cause) {
    throw new FtcpError(
      SswErrorCode.NATIVE_UNAVAILABLE,
      'the ftcp_ssw native addon is not built; run `pnpm --filter @ftcp/ssw run build`',
      { cause },
    );
  }
  return addon;
}

/**
 * Turn an exception from the addon into an {@link FtcpError} with `code`,
 * keeping the system call and errno it carries.
 */
export function nativeError(code: string, what: string, err: unknown): FtcpError {
  const e = err as { message?: string; syscall?: string; errno?: number };
  const detail = e.message ?? String(err);
  const out = new FtcpError(code, `${what}: ${detail}`, { cause: err });
  return Object.assign(out, { syscall: e.syscall, errno: e.errno });
}
