// `plantgate collector --config` as the SOC runs it: a witness key and a gateways list from the
// config, a gateway's checkpoints countersigned over the wire, and config mistakes exiting 2.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, CHECKPOINT_DIR, checkpointFileName } from '../../src/audit/log.js';
import { noteSigner, parseNote, verifierKey } from '../../src/audit/note.js';
import { outcomeRecord } from '../../src/audit/records.js';
import { startShipper } from '../../src/audit/shipper.js';
import { ManualClock } from '../../src/core/clock.js';
import { initPki } from '../../src/identity/dev/pki.js';
import { freePort } from '../bench/processes.js';
import { assertBuilt, run, start } from './cli.js';

let dir: string;
beforeAll(async () => {
  assertBuilt();
  dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-colcli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('plantgate collector', () => {
  it('witnesses the checkpoints of a configured gateway and prints the witness verifier key with audit key --witness', async () => {
    const pki = await initPki(path.join(dir, 'pki'), { agents: [] });
    const gwKey = generateKeyPairSync('ed25519').privateKey;
    await run(['keys', 'gen', '--alg', 'EdDSA', '--name', 'witness', '--out', path.join(dir, 'keys')]);
    const witnessKeyFile = path.join(dir, 'keys', 'witness.private.jwk.json');
    const wkey = await run(['audit', 'key', '--key', witnessKeyFile, '--name', 'soc.example/witness', '--witness']);
    expect(wkey.code, wkey.stderr).toBe(0);
    expect(wkey.stdout.trim()).toMatch(/^soc\.example\/witness\+[0-9a-f]{8}\+B[A-Za-z0-9+/]+=*$/);

    const port = await freePort();
    const config = path.join(dir, 'collector.yaml');
    await writeFile(
      config,
      `listen: { host: 127.0.0.1, port: ${port} }\ntls: { ca: pki/ca.crt, cert: pki/collector.crt, key: pki/collector.key }\nout_dir: out\n` +
        `witness: { name: soc.example/witness, key_file: keys/witness.private.jwk.json }\n` +
        `gateways:\n  - { id: gw-1, verifier_key: "${verifierKey('plantgate/gw-1', gwKey)}", identity: "${pki.gateway.spiffeId}" }\n`,
    );
    const col = await start(['collector', '--config', config], 'collector listening');
    try {
      const log = await AuditLog.open({ dir: path.join(dir, 'spool'), gatewayId: 'gw-1', clock: new ManualClock(), checkpoints: { signer: noteSigner('plantgate/gw-1', gwKey), everyRecords: 5 } });
      const [ca, cert, key] = await Promise.all([pki.ca.cert, pki.gateway.cert, pki.gateway.key].map((f) => readFile(f)));
      const s = startShipper({ log, host: '127.0.0.1', port, tls: { ca, cert, key }, gatewayId: 'gw-1', witnessKeys: [wkey.stdout.trim()] });
      const cosigned = new Promise<number>((resolve) => s.once('cosigned', resolve));
      for (let i = 0; i < 5; i++) log.append(outcomeRecord({ decisionSeq: i, sessionId: 's', status: 'ok' }));
      expect(await cosigned).toBe(5);
      await s.close();
      await log.close();
      const note = parseNote(await readFile(path.join(dir, 'spool', CHECKPOINT_DIR, checkpointFileName(5)), 'utf8'));
      expect(note.sigs.map((x) => x.name)).toEqual(['plantgate/gw-1', 'soc.example/witness']);
      const day = new Date(new ManualClock().now()).toISOString().slice(0, 10);
      const lines = (await readFile(path.join(dir, 'out', 'gw-1', `${day}.ndjson`), 'utf8')).trim().split('\n');
      expect(lines.length).toBeGreaterThanOrEqual(6);
    } finally {
      col.child.kill('SIGTERM');
      expect((await col.exited).code).toBe(0);
    }
  });

  it('exits 2 naming the field when the witness key file cannot be read or a verifier key is malformed', async () => {
    // Certificates of its own: the mistakes under test are the only ones in the file.
    await initPki(path.join(dir, 'pki-bad'), { agents: [] });
    const config = path.join(dir, 'bad.yaml');
    await writeFile(config, `listen: { host: 127.0.0.1, port: 0 }\ntls: { ca: pki-bad/ca.crt, cert: pki-bad/collector.crt, key: pki-bad/collector.key }\nout_dir: out\nwitness: { name: w, key_file: nope.jwk }\n`);
    let r = await run(['collector', '--config', config]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/witness\.key_file: .*nope\.jwk: cannot read/);
    await writeFile(config, `listen: { host: 127.0.0.1, port: 0 }\ntls: { ca: pki-bad/ca.crt, cert: pki-bad/collector.crt, key: pki-bad/collector.key }\nout_dir: out\ngateways: [{ id: gw-1, verifier_key: "x+1+2" }]\n`);
    r = await run(['collector', '--config', config]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.yaml:4:\d+: gateways\[0\]\.verifier_key: not a signed-note/);
  });
});
