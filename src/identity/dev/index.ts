// Development PKI, signing keys and tokens: tests, the demo and `plantgate pki|keys|token`.
// Never imported by the gateway's enforcement path.
export * from './pki.js';
export * from './keys.js';
export * from './mint.js';
