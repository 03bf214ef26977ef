/**
 * Where the compiled TCP peer tool is, and a shortcut to start it in a host.
 */
import { fileURLToPath } from 'node:url';
import type { HostProcess } from './process.js';
import type { NsRole, Testbed } from './testbed.js';

/** Absolute path of the compiled `tools/peer.js` (see that file for its commands). */
export const PEER_TOOL: string = fileURLToPath(new URL('./tools/peer.js', import.meta.url));

/**
 * Starts the peer tool in a host with this Node binary, e.g.
 * `startPeer(bed, 'primary', ['serve', '--port', '20001', '--bind', bed.vip])`.
 */
export function startPeer(bed: Testbed, role: NsRole, args: readonly string[]): HostProcess {
  return bed.spawn(role, process.execPath, [PEER_TOOL, ...args]);
}
