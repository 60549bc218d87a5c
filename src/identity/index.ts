// Workload identity and access tokens (docs/identity.md). Re-exports only; each module has one job.
export * from './spiffe.js';
export * from './cert.js';
export * from './token-error.js';
export * from './issuers.js';
export { verifyAccessToken, ALLOWED_ALGORITHMS, DEFAULT_LEEWAY_SEC, DEFAULT_MAX_TTL_SEC, MAX_TOKEN_LENGTH, type VerifyContext } from './verify.js';
export * from './registry.js';
export * from './revocation.js';
export * from './limits.js';
export * from './operator.js';
export * from './static-ip.js';
