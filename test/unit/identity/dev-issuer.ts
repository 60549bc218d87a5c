// The development issuer's keys (fixtures/keys) and the names the identity tests share.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { JSONWebKeySet, JWK } from 'jose';

const fixture = (name: string): unknown => JSON.parse(readFileSync(fileURLToPath(new URL(`../../../fixtures/keys/${name}`, import.meta.url)), 'utf8'));
export const devPrivate = fixture('dev-issuer.private.jwk.json') as JWK;
export const devJwks = fixture('dev-issuer.jwks.json') as JSONWebKeySet;
export const ISS = 'https://issuer.dev.plantgate.local';
export const AUD = 'plantgate:site-a';
export const SUB = 'spiffe://plant.example/agent/optimizer';
export const THUMB = 'q3pL3Bz6qZJ0mXyS0nY7m3J1Fh8rHk2bqS0dXvH0r5Q';
