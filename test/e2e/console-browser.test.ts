// The operator console in a real browser: Debian's chromium, headless, driven by playwright-core,
// against the real gateway's operator API (HTTPS, its own certificate pinned by SPKI hash) with
// agents talking Modbus/TCP Security to the same gateway. Sign in, watch a denied command appear
// live, approve a pending request and see the agent's retry succeed, freeze an asset and see the
// next write refused, unfreeze. Screenshots of each step go to test-artifacts/console/ (git-ignored).
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectModbusAgent, putToken, type ModbusAgent } from '../../src/cli/demo/agent.js';
import { startLab, type Lab } from '../../src/cli/demo/lab.js';
import { modbusError } from '../integration/safety/gateway-harness.js';
import { ROOT } from './cli.js';

const CHROMIUM = process.env.PLANTGATE_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'test-artifacts', 'console');
const SETPOINT = 0;
const VALVE = 1;

// Steps of one operator's session in one browser, in order (make test-shuffle keeps it): sign in first.
describe('operator console in headless chromium', { shuffle: false }, () => {
  let dir: string;
  let lab: Lab;
  let browser: Browser;
  let page: Page;
  let base: string;
  let optimizer: ModbusAgent;
  let planner: ModbusAgent;

  /** A locator's visible text, once it is there (waits for it, an event, not a sleep). */
  const text = async (l: Locator): Promise<string> => {
    await l.waitFor();
    return l.innerText();
  };
  const shot = (name: string) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  /** The live table's newest row with this reason (the page's EventSource puts it there). */
  const liveRow = (reason: string, agent: string) => page.locator('#decision-rows tr', { has: page.locator('td.reason', { hasText: reason }) }).filter({ hasText: agent }).first();

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: 'make test' installs Debian's chromium (make test-deps)`);
    await mkdir(ARTIFACTS, { recursive: true });
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-console-browser-'));
    lab = await startLab({ stateDir: dir });
    const o = lab.gateway.operatorApi!;
    base = `https://localhost:${o.port}`;
    // Trust exactly the gateway's certificate (its public key's SHA-256), not every bad certificate.
    const gatewayCert = new X509Certificate(await readFile(lab.pki.gateway.cert));
    const spki = createHash('sha256').update(gatewayCert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--ignore-certificate-errors-spki-list=${spki}`],
    });
    page = await (await browser.newContext({ viewport: { width: 1360, height: 900 } })).newPage();
    page.setDefaultTimeout(20_000);

    const api = lab.gateway.agentApi;
    for (const agent of ['optimizer', 'planner'] as const) {
      expect((await putToken(api.host, api.port, await lab.credentials(agent), await lab.token(agent, { ttlSec: 900 }))).status).toBe(200);
    }
    optimizer = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, await lab.credentials('optimizer'));
    planner = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, await lab.credentials('planner'));
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await optimizer?.close();
    await planner?.close();
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('signs in with an operator token and lands on the live decisions', async () => {
    await page.goto(`${base}/console/`);
    expect(page.url()).toBe(`${base}/console/login`);
    await shot('01-sign-in');
    await page.fill('#token', await lab.operatorToken());
    await page.click('#sign-in');
    await page.waitForURL(`${base}/console/decisions`);
    await page.waitForSelector('body[data-live="connected"]');
    expect(await text(page.locator('header .who'))).toContain('bob@plant.example');
    const cookies = await page.context().cookies();
    expect(cookies.find((c) => c.name === '__Host-pg_session')).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict' });
    await shot('02-live-decisions');
  });

  it('shows a denied command the moment the agent sends it', async () => {
    expect(await modbusError(optimizer.client.writeRegister(SETPOINT, 950))).toBe(0x03);
    const row = liveRow('VALUE_OUT_OF_BOUNDS', 'agent/optimizer');
    await row.waitFor();
    expect(await text(row.locator('td.effect'))).toBe('deny');
    expect(await text(row)).toContain('tank1.setpoint=95');
    await shot('03-denied-live');
  });

  it("approves a pending request (the two-person rule shown) and the agent's identical retry succeeds", async () => {
    lab.sim.write('valve1.open', 0);
    expect(await modbusError(planner.client.writeCoil(VALVE, true))).toBe(0x01);
    await liveRow('APPROVAL_REQUIRED', 'agent/planner').waitFor();
    await page.click('header nav a[href="/console/approvals"]');
    const card = page.locator('article.approval').first();
    expect(await text(card)).toContain('valve1.open');
    expect(await text(card)).toContain('alice@plant.example');
    expect(await text(card.locator('dd.rule'))).toContain('may not be the owner (alice@plant.example)');
    await card.locator('input[name="reason"]').fill('drain for inspection, checked on site');
    await shot('04-approval-pending');
    await card.locator('button.approve').click();
    expect(await text(page.locator('.flash.ok'))).toContain('Approved');
    await shot('05-approved');

    await planner.client.writeCoil(VALVE, true);
    expect(lab.sim.read('valve1.open')).toBe(1);
    await page.click('header nav a[href="/console/decisions"]');
    await page.waitForSelector('body[data-live="connected"]');
    const allowed = page.locator('#decision-rows tr.allow').filter({ hasText: 'agent/planner' }).first();
    expect(await text(allowed)).toContain('valve1.open');
    expect(await text(allowed)).toContain('apr-');
    await shot('06-retry-allowed');
  });

  it('freezes an asset: the next write is refused EMERGENCY_FREEZE, live; unfreezing lets it through again', async () => {
    await page.click('header nav a[href="/console/freezes"]');
    await page.selectOption('#freeze-scope', 'asset');
    await page.fill('#freeze-value', 'plc1');
    await page.fill('#freeze-reason', 'leak reported on tank 1');
    await page.click('#freeze-submit');
    expect(await text(page.locator('.flash.ok'))).toContain('Frozen');
    expect(await text(page.locator('.frozen-banner'))).toContain('asset plc1');
    await shot('07-frozen');

    await page.click('header nav a[href="/console/decisions"]');
    await page.waitForSelector('body[data-live="connected"]');
    expect(await modbusError(optimizer.client.writeRegister(SETPOINT, 600))).toBe(0x01);
    expect(lab.sim.read('tank1.setpoint')).not.toBeCloseTo(60);
    await liveRow('EMERGENCY_FREEZE', 'agent/optimizer').waitFor();
    await shot('08-write-refused-frozen');

    await page.click('header nav a[href="/console/freezes"]');
    const frozen = page.locator('article.frozen').first();
    await frozen.locator('input[name="reason"]').fill('leak fixed, checked on site');
    await frozen.locator('button[type="submit"]').click();
    expect(await text(page.locator('.flash.ok'))).toContain('Unfrozen');
    await page.locator('#no-freezes').waitFor({ state: 'visible' });
    expect(await page.locator('.frozen-banner').count()).toBe(0);
    await shot('09-unfrozen');
    await optimizer.client.writeRegister(SETPOINT, 600);
    expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(60);
  });

  it('shows agents and tokens, the bundle, the audit status and the PLC connections with interlock input ages', async () => {
    for (const [p, want] of [
      ['agents', 'spiffe://plant.example/agent/planner'],
      ['bundle', 'signer key id'],
      ['audit', 'spool lag'],
      ['plcs', 'plc1/tank1.level'],
    ] as const) {
      await page.click(`header nav a[href="/console/${p}"]`);
      expect(await text(page.locator('main'))).toContain(want);
      await shot(`10-${p}`);
    }
  });
});
