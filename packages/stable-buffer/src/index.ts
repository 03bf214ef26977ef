export { ErrorCode, FtcpError, isFtcpError } from './errors.js';
export type { ErrorCodeValue } from './errors.js';
