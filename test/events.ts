// Waiting on a condition that an event announces (a collector's 'record' after it stored one).
// The listener is on before each check starts: an event fired while the check reads (a file, say)
// wakes the next wait, instead of being missed and leaving the test waiting for one that never comes.
import type { EventEmitter } from 'node:events';

/** Checks `done` until it holds, waiting for `event` on `emitter` between checks. */
export async function untilEvent(emitter: EventEmitter, event: string, done: () => boolean | Promise<boolean>): Promise<void> {
  for (;;) {
    let wake!: () => void;
    const next = new Promise<void>((resolve) => (wake = resolve));
    emitter.on(event, wake);
    try {
      if (await done()) return;
      await next;
    } finally {
      emitter.off(event, wake);
    }
  }
}
