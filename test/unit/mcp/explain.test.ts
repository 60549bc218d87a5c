// What an LLM agent reads when a tool call is refused: the reason code first, then what happened
// and what to do; every reason code the gateway can decide has such a sentence.
import { describe, expect, it } from 'vitest';
import { REASONS } from '../../../src/core/reasons.js';
import { explainDenial } from '../../../protocols/mcp/explain.js';

const ctx = { action: 'write tank1.setpoint := 95 % on plc1', tool: 'write_plc1_tank1_setpoint' };

describe('refusals explained to an MCP agent', () => {
  it('has a sentence of its own for every reason code (never the generic one)', () => {
    for (const reason of REASONS.filter((r) => r !== 'ALLOWED')) {
      const text = explainDenial({ reason, ruleId: 'r1' }, ctx);
      expect(text.startsWith(`${reason}: `), reason).toBe(true);
      expect(text, reason).not.toBe(`${reason}: The gateway refused to ${ctx.action}.`);
      expect(text, reason).toContain('tank1.setpoint');
    }
  });

  it('tells the bounds the caller may write, and how to retry an approval', () => {
    expect(explainDenial({ reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'optimizer-setpoint' }, { ...ctx, unit: '%', grant: { ruleIds: ['optimizer-setpoint'], min: 20, max: 80, approval: false, windows: [] } })).toBe(
      'VALUE_OUT_OF_BOUNDS: The value is outside what rule optimizer-setpoint allows, so the gateway refused to write tank1.setpoint := 95 % on plc1. You may write 20 to 80 %; choose a value inside that range.',
    );
    const approval = explainDenial({ reason: 'APPROVAL_REQUIRED', ruleId: 'planner-drain', approvalId: 'apr-1' }, { ...ctx, grantTtlMin: 2 });
    expect(approval).toContain('plantgate approvals approve apr-1');
    expect(approval).toContain('call write_plc1_tank1_setpoint again with exactly the same arguments within 2 minutes');
  });
});
