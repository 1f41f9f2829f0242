import { createClient } from 'redis';
import type { ChartLua, ChartRedis } from './redis-store.ts';

/**
 * node-redis behind the chart store's two-method interface, for when no shared Redis adapter is
 * given (and for the store's contract tests). EVALSHA first, EVAL when Redis does not know the
 * script yet.
 */
export async function connectChartRedis(
  url: string,
  onError: (message: string) => void = () => {},
): Promise<ChartRedis & { close(): Promise<void> }> {
  const client = createClient({ url, disableOfflineQueue: true });
  client.on('error', (err: unknown) => onError(String((err as Error)?.message ?? err)));
  await client.connect();
  return {
    command: (args) => client.sendCommand(args),
    async evalScript(script: ChartLua, keys, args) {
      const tail = [String(keys.length), ...keys, ...args];
      try {
        return await client.sendCommand(['EVALSHA', script.sha, ...tail]);
      } catch (err) {
        if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err;
        return await client.sendCommand(['EVAL', script.source, ...tail]);
      }
    },
    async close() {
      try {
        await client.close();
      } catch {
        client.destroy();
      }
    },
  };
}
