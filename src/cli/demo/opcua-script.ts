// The OPC UA part of `plantgate demo --opcua`: the optimizer opens an OPC UA session on the
// gateway's front (SignAndEncrypt, its application certificate, a JWT in ActivateSession), reads a
// live value, writes an allowed setpoint, and is refused a setpoint outside the bounds — each with
// the decision the SOC stream recorded. Loaded only with --opcua (node-opcua is heavy).
import path from 'node:path';
import { AttributeIds, DataType, MessageSecurityMode, OPCUACertificateManager, OPCUAClient, SecurityPolicy } from 'node-opcua';
import { createJwtSession } from '../../../protocols/opcua/jwt-token.js';
import type { Lab } from './lab.js';
import { decisionsFrom, type StepResult } from './script.js';

export async function runOpcuaScript(lab: Lab, print: (r: StepResult) => void): Promise<StepResult[]> {
  const ua = lab.opcua;
  if (ua === undefined) throw new Error('the lab runs without OPC UA');
  const decisions = decisionsFrom(lab);
  const results: StepResult[] = [];
  const client = OPCUAClient.create({
    applicationUri: 'spiffe://plant.example/agent/optimizer',
    securityMode: MessageSecurityMode.SignAndEncrypt,
    securityPolicy: SecurityPolicy.Basic256Sha256,
    certificateFile: ua.agentFiles.optimizer.cert,
    privateKeyFile: ua.agentFiles.optimizer.key,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0 },
    clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(lab.stateDir, 'opcua', 'agent-pki'), automaticallyAcceptUnknownCertificate: true }),
  });
  await client.connect(ua.endpointUrl);
  try {
    const session = await createJwtSession(client, await ua.token('optimizer', { scope: ['read', 'write', 'call', 'browse', 'subscribe'] }));
    const ns = ((await session.readNamespaceArray()) as string[]).indexOf(ua.namespace);
    const node = (point: string) => `ns=${ns};s=${point}`;
    const step = async (name: string, command: string, expected: string, run: () => Promise<string>) => {
      const answer = await run();
      const d = await decisions.next();
      const r: StepResult = { step: name, agent: 'optimizer', command, answer, decision: d.effect, reason: d.reason, expected, ok: d.reason === expected };
      results.push(r);
      print(r);
    };
    await step('OPC UA read of a live value', 'UA Read tank1.level', 'ALLOWED', async () => {
      const dv = await session.read({ nodeId: node('tank1.level'), attributeId: AttributeIds.Value });
      return `${Number(dv.value.value).toFixed(1)} ${dv.statusCode.name}`;
    });
    const write = (value: number) => async () =>
      (await session.write({ nodeId: node('tank1.setpoint'), attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value } } })).name;
    await step('OPC UA write within bounds', 'UA Write tank1.setpoint=45', 'ALLOWED', write(45));
    await step('OPC UA write outside 20..80 %', 'UA Write tank1.setpoint=95', 'VALUE_OUT_OF_BOUNDS', write(95));
    await session.close();
  } finally {
    await client.disconnect();
  }
  return results;
}
