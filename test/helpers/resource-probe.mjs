// Preloaded into a service under test (`node --expose-gc --import <this file> …`). On SIGUSR2 it
// runs a full garbage collection and prints one JSON line:
//   {"level":30,"msg":"resource probe","seq":N,"heapUsed":…,"resources":{"TCPSocketWrap":…,"Timeout":…}}
// so a test can compare heap and live handles/timers against a baseline without the noise of
// garbage that simply has not been collected yet. It only observes.
import process from 'node:process';
import { setImmediate } from 'node:timers';

let seq = 0;
process.on('SIGUSR2', () => {
  // Twice, with a turn of the event loop between: finalizers and weak callbacks run after the first.
  globalThis.gc?.();
  setImmediate(() => {
    globalThis.gc?.();
    const resources = {};
    for (const type of process.getActiveResourcesInfo())
      resources[type] = (resources[type] ?? 0) + 1;
    const line = {
      level: 30,
      time: Date.now(),
      msg: 'resource probe',
      seq: ++seq,
      gc: typeof globalThis.gc === 'function',
      heapUsed: process.memoryUsage().heapUsed,
      resources,
    };
    process.stderr.write(`${JSON.stringify(line)}\n`);
  });
});
