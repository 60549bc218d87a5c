// Interlock inputs of an OPC UA-only PLC, read over OPC UA: the demo bundle's overfill interlock on
// asset plc1-ua, with no Modbus endpoint for that asset, so the process image reads tank1.level
// through the gateway's own upstream session (SignAndEncrypt, the gateway's certificate, the PLC's
// certificate pinned) from the simulator's OPC UA face. The interlock engine then judges a real
// Command exactly as the gateway's pipeline asks it. The gateway's wiring of this reader
// (src/gateway/gateway.ts) is the lead's; everything below it is real.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { OPCUACertificateManager } from 'node-opcua';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import type { Command } from '../../../src/core/command.js';
import { InterlockEngine, processInputs } from '../../../src/interlocks/engine.js';
import type { InterlockDef } from '../../../src/interlocks/payload.js';
import { ProcessImage } from '../../../src/interlocks/process-image.js';
import type { BundleAsset } from '../../../src/policy/payload.js';
import { compileSources } from '../../../src/policy/sources.js';
import { loadPlant } from '../../../src/assets/plant.js';
import { PlantRuntime } from '../../../src/sim/runtime.js';
import { startOpcuaSimulator, type OpcuaSimHandle } from '../../../src/sim/opcua-server.js';
import { createAppCert, writeAppCert } from '../../../protocols/opcua/app-cert.js';
import { OpcuaUpstream } from '../../../protocols/opcua/upstream.js';
import { ModbusRegisterReader } from '../../../protocols/modbus/register-reader.js';
import { silentLogger } from '../../../src/core/log.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const GATEWAY_URI = 'urn:plantgate:gateway';

describe('interlock inputs of an OPC UA-only PLC, read over OPC UA', () => {
  let dir: string;
  let runtime: PlantRuntime;
  let sim: OpcuaSimHandle;
  let upstream: OpcuaUpstream;
  let image: ProcessImage;
  let engine: InterlockEngine;
  let assets: BundleAsset[];
  let overfill: InterlockDef;
  const clock = new ManualClock(Date.UTC(2026, 0, 15, 12));

  /** What the front builds for an agent's Write of pump1.run := 1 on plc1-ua. */
  const startPump = (): Command => ({
    sessionId: 'opcua-1',
    protocol: 'opcua',
    assetId: 'plc1-ua',
    operation: 'write',
    functionCode: 673,
    service: 'Write',
    targets: [{ nodeId: `nsu=${assets.find((a) => a.id === 'plc1-ua')!.namespace};s=pump1.run` }],
    points: ['pump1.run'],
    rawValues: [1],
    values: { 'pump1.run': 1 },
  });
  const setLevel = async (percent: number) => {
    runtime.write('plc1/tank1.level', percent);
    await image.pollNow();
  };

  let simFiles: { cert: string; key: string };
  let gwFiles: { cert: string; key: string };
  let simDer: Buffer;
  /** The simulator's OPC UA face of the plant, and the gateway's upstream session, process image and interlocks reading it. */
  async function connectPlc(name: string): Promise<{ sim: OpcuaSimHandle; upstream: OpcuaUpstream; image: ProcessImage; engine: InterlockEngine }> {
    const sim = await startOpcuaSimulator({ runtime, security: 'secure', certificateFile: simFiles.cert, privateKeyFile: simFiles.key, pkiDir: path.join(dir, `sim-pki-${name}`) });
    const pki = new OPCUACertificateManager({ rootFolder: path.join(dir, `upstream-pki-${name}`), automaticallyAcceptUnknownCertificate: false });
    await pki.initialize();
    await pki.trustCertificate(simDer);
    const upstream = new OpcuaUpstream({
      endpointUrl: sim.endpointUrl,
      security: 'SignAndEncrypt',
      certificateFile: gwFiles.cert,
      privateKeyFile: gwFiles.key,
      applicationUri: GATEWAY_URI,
      clientCertificateManager: pki,
      // The front's points are subscribed as in the gateway; the interlock input is read on its own.
      targets: [],
      onValue: () => undefined,
      // Keeps retrying in the background after the PLC goes away, as in production.
      initialDelayMs: 100,
      maxDelayMs: 500,
    });
    await upstream.start();
    await upstream.whenUp();
    const image = new ProcessImage({
      inputs: processInputs([overfill], assets),
      // No Modbus face for plc1-ua: the only way to its inputs is OPC UA.
      opcua: (asset) => (asset === 'plc1-ua' ? upstream : undefined),
      clock,
    });
    return { sim, upstream, image, engine: new InterlockEngine([overfill], assets, image) };
  }

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-opcua-interlock-'));
    const payload = await compileSources(path.join(ROOT, 'rules/demo/bundle.yaml'), { now: clock.now(), revision: 1 });
    assets = payload.assets;
    overfill = payload.interlocks!.find((d) => d.id === 'tank1-overfill-ua')!;
    // The plant stands still (its own manual clock): the level is what the test sets.
    runtime = new PlantRuntime(await loadPlant(path.join(ROOT, 'fixtures/plants/water-treatment.yaml')), new ManualClock(clock.now()));
    const [simCert, gwCert] = await Promise.all([
      createAppCert({ applicationUri: 'urn:plantgate:sim:water-treatment', commonName: 'sim', hosts: ['127.0.0.1', 'localhost'] }),
      createAppCert({ applicationUri: GATEWAY_URI, commonName: 'gateway', hosts: ['127.0.0.1', 'localhost'] }),
    ]);
    simFiles = await writeAppCert(dir, 'sim', simCert);
    gwFiles = await writeAppCert(dir, 'gateway', gwCert);
    simDer = simCert.der;
    ({ sim, upstream, image, engine } = await connectPlc('shared'));
  }, 30_000);

  afterAll(async () => {
    image?.close();
    await upstream?.close();
    await sim?.close();
    runtime?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps polling an asset over Modbus when it has a Modbus endpoint, even though its points have NodeIds', () => {
    const both = new ProcessImage({
      inputs: processInputs([overfill], assets),
      modbus: { endpoint: () => ({ host: '127.0.0.1', port: 1, unitId: 1 }), connect: (ep) => new ModbusRegisterReader(ep, { timeoutMs: 1000, logger: silentLogger }) },
      opcua: () => upstream,
      clock,
    });
    expect(both.status()).toEqual([expect.objectContaining({ asset: 'plc1-ua', table: 'input', address: 0, quantity: 1 })]);
    expect(both.status()[0]!.nodes).toBeUndefined();
    both.close();
  });

  it('reads the input node in one OPC UA Read, in engineering units, stamped with the gateway clock', async () => {
    await setLevel(42.5);
    const slot = image.slot('plc1-ua', 'tank1.level');
    expect(image.values[slot]).toBeCloseTo(42.5, 5);
    expect(image.readAtMs[slot]).toBe(clock.now());
    const status = image.status();
    expect(status).toHaveLength(1);
    expect(status[0]).toMatchObject({ asset: 'plc1-ua', last: 'ok', nodes: [`nsu=${sim.assets[0]!.namespaceUri};s=tank1.level`] });
  });

  it('allows starting the pump while the tank level read over OPC UA is safe', async () => {
    await setLevel(50);
    expect(engine.check(startPump(), clock.now())).toBeUndefined();
  });

  it('trips the overfill interlock when the level read over OPC UA says the tank is nearly full', async () => {
    await setLevel(90);
    const trip = engine.check(startPump(), clock.now());
    expect(trip).toMatchObject({ reason: 'INTERLOCK', interlockId: 'tank1-overfill-ua', point: 'pump1.run' });
    expect(trip!.inputs).toEqual([{ point: 'plc1-ua/tank1.level', value: 90, ageMs: 0, maxAgeMs: 2000 }]);
  });

  it('with confirm, reads the level over OPC UA again before a start: a level that rose since the last poll refuses it', async () => {
    await setLevel(50);
    // The same interlock asking for a confirming read (docs/safety.md, the worst-case window).
    const confirming = new InterlockEngine([{ ...overfill, confirm_ms: 2000 }], assets, image);
    runtime.write('plc1/tank1.level', 90); // after the gateway's last poll: the image still says 50 %
    expect(engine.check(startPump(), clock.now())).toBeUndefined();
    const c = confirming.confirm(startPump())!;
    expect(c).toBeDefined();
    // Judged before the confirming read answers: the inputs are not confirmed, so it is refused.
    expect(confirming.check(startPump(), clock.now(), c.after)).toMatchObject({ reason: 'INTERLOCK_INPUT_STALE', interlockId: 'tank1-overfill-ua' });
    await c.done;
    const trip = confirming.check(startPump(), clock.now(), c.after);
    expect(trip).toMatchObject({ reason: 'INTERLOCK', interlockId: 'tank1-overfill-ua' });
    expect(trip!.inputs[0]).toMatchObject({ point: 'plc1-ua/tank1.level', value: 90 });
    await setLevel(50);
    const again = confirming.confirm(startPump())!;
    await again.done;
    expect(confirming.check(startPump(), clock.now(), again.after)).toBeUndefined();
  });

  // A PLC of its own: the one the other cases read stays up.
  it('denies INTERLOCK_INPUT_STALE once the OPC UA PLC has gone away for longer than the freshness bound', async () => {
    const { sim, upstream, image, engine } = await connectPlc('gone');
    onTestFinished(async () => {
      image.close();
      await upstream.close();
    });
    runtime.write('plc1/tank1.level', 30);
    await image.pollNow();
    const slot = image.slot('plc1-ua', 'tank1.level');
    const readAt = image.readAtMs[slot];
    expect(engine.check(startPump(), clock.now())).toBeUndefined();
    await sim.close();
    // Polls while the PLC is away answer nothing: the last value keeps its old time.
    clock.advance(1000);
    await image.pollNow();
    expect(image.status()[0]!.last).toMatch(/unavailable|failed|timeout/);
    expect(image.readAtMs[slot]).toBe(readAt);
    expect(engine.check(startPump(), clock.now())).toBeUndefined();
    clock.advance(1500);
    await image.pollNow();
    const trip = engine.check(startPump(), clock.now());
    expect(trip).toMatchObject({ reason: 'INTERLOCK_INPUT_STALE', interlockId: 'tank1-overfill-ua' });
    expect(trip!.inputs[0]).toMatchObject({ point: 'plc1-ua/tank1.level', value: 30, ageMs: 2500 });
  });
});
