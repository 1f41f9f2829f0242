/**
 * Monotonic milliseconds from CLOCK_MONOTONIC: the same clock in every process on the machine,
 * so a time taken in the simulator's process compares with one taken here.
 */
export function monoMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}
