import { chromium, type BrowserContext } from 'playwright-core';
import { tempDir } from './service.ts';

/**
 * Debian's Chromium, headless, with nothing that would reach the network on its own (the machines
 * have no internet) and a fresh profile (removed with the test file's other temp directories).
 */
export async function launchBrowser(): Promise<BrowserContext> {
  return chromium.launchPersistentContext(tempDir('kic-chromium-'), {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
