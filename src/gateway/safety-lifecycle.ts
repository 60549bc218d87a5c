// The live-value side of the active bundle (docs/architecture.md, Seams: readers): the process
// image that reads interlock inputs and max_step bases through the gateway's own PLC connections,
// and the interlock engine over it. Rebuilt whenever a bundle becomes active; a bundle whose
// interlocks cannot be set up leaves the gateway 'broken' (every state-changing command refused,
// docs/safety.md). Owns no decision: the pipeline asks it for the interlocks of the moment.
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import type { NodeReader, RegisterReader } from '../core/readers.js';
import { InterlockEngine, processInputs } from '../interlocks/engine.js';
import { ProcessImage, type ProcessEndpoint, type ProcessInputSpec } from '../interlocks/process-image.js';
import type { PolicyMemory } from '../policy/memory.js';
import { DEFAULT_STEP_BASE_MAX_AGE_MS, DEFAULT_STEP_BASE_POLL_MS, type BundlePayload } from '../policy/payload.js';
import type { GatewayConfig } from './config.js';
import type { PolicyState } from './policy-state.js';

export interface SafetyLifecycleOptions {
  policy: PolicyState;
  /** The gateway's Modbus upstreams: where the image reads each asset. */
  upstreams: GatewayConfig['upstreams'];
  /** A Modbus PLC's reader: a connection of the gateway's own (protocols/modbus/register-reader.ts). */
  registers(endpoint: ProcessEndpoint): RegisterReader;
  /** An OPC UA-only asset's reader: the gateway's own upstream session (started after the image). */
  opcua(assetId: string): NodeReader | undefined;
  /** Policy memory: every value read becomes a possible max_step base. */
  memory: PolicyMemory;
  clock: Clock;
  logger: Logger;
}

export class SafetyLifecycle {
  private safety: { image: ProcessImage; interlocks: InterlockEngine } | 'broken' | undefined;

  constructor(private readonly opts: SafetyLifecycleOptions) {}

  /** The active bundle's interlocks; 'broken' when they could not be set up (fail closed). */
  interlocks(): InterlockEngine | 'broken' | undefined {
    return this.safety === 'broken' ? 'broken' : this.safety?.interlocks;
  }

  /** The process image, or 'broken' / undefined as interlocks(). */
  image(): ProcessImage | 'broken' | undefined {
    return this.safety === 'broken' ? 'broken' : this.safety?.image;
  }

  /** Reads every input once (interlocked commands are refused until their inputs have been read). */
  async pollNow(): Promise<void> {
    if (this.safety !== undefined && this.safety !== 'broken') await this.safety.image.pollNow();
  }

  /** A bundle became active: a new image and engine for its interlocks and stepped points; the old image stops. */
  rebuild(): void {
    const { policy, upstreams, memory, clock, logger } = this.opts;
    const payload = policy.payload;
    const defs = payload?.interlocks ?? [];
    const previous = this.safety;
    this.safety = undefined;
    // The image also reads every point a max_step names: a step is measured from the PLC's value.
    const stepped = payload === undefined ? [] : stepBaseInputs(payload, policy.engine?.steppedPoints() ?? []);
    if (payload !== undefined && (defs.length > 0 || stepped.length > 0)) {
      const image = new ProcessImage({
        inputs: [...processInputs(defs, payload.assets), ...stepped],
        onValue: (asset, point, value, atMs) => memory.observe(asset, point, value, atMs),
        modbus: {
          endpoint: (assetId) => {
            const u = upstreams.find((x) => x.asset === assetId);
            const unitId = u?.unit_id ?? payload.assets.find((a) => a.id === assetId)?.unit_id;
            return u === undefined || unitId === undefined ? undefined : { host: u.host, port: u.port, unitId };
          },
          connect: (endpoint) => this.opts.registers(endpoint),
        },
        // Inputs with a NodeId and no Modbus upstream are read on the gateway's own OPC UA upstream
        // session (looked up per poll: that session starts after the image).
        opcua: (assetId) => this.opts.opcua(assetId),
        clock,
        logger,
      });
      try {
        this.safety = { image, interlocks: new InterlockEngine(defs, payload.assets, image) };
        image.start();
      } catch (err) {
        image.close();
        this.safety = 'broken';
        logger.error({ err: (err as Error).message }, 'interlocks could not be set up: state-changing commands are refused');
      }
    }
    if (previous !== undefined && previous !== 'broken') previous.image.close();
  }

  close(): void {
    if (this.safety !== undefined && this.safety !== 'broken') this.safety.image.close();
  }
}

/** The points max_step names, read by the process image at the bundle's step-base rate. */
function stepBaseInputs(payload: BundlePayload, points: { asset: string; point: string }[]): ProcessInputSpec[] {
  const pollMs = payload.limits.step_base_poll_ms ?? DEFAULT_STEP_BASE_POLL_MS;
  const maxAgeMs = payload.limits.step_base_max_age_ms ?? DEFAULT_STEP_BASE_MAX_AGE_MS;
  return points.map(({ asset, point }) => ({ asset, point, def: payload.assets.find((a) => a.id === asset)!.points[point]!, pollMs, maxAgeMs }));
}
