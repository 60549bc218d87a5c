// The gateway config block `emergency_freeze` (docs/configuration.md): the two-person rule for
// lifting a freeze. Owns the schema only.
import { z } from 'zod';

export const freezeConfigSchema = z
  .strictObject({
    /** Distinct operators who must unfreeze before a freeze is lifted: 2 is the two-person rule. */
    unfreeze_quorum: z.number().int().min(1).max(5).default(1),
    /** How long one operator's unfreeze waits for the others' before it lapses. */
    unfreeze_vote_ttl_sec: z.number().int().min(10).max(86_400).default(900),
  })
  .default({ unfreeze_quorum: 1, unfreeze_vote_ttl_sec: 900 });
