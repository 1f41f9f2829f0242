/// <reference lib="dom" />
// The dashboard's named charts when there are more than a page of them, in a real headless
// Chromium at phone width: paging by keyboard, PDF charts as a tile, no sideways scrolling.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrowserContext, Page } from 'playwright-core';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { launchBrowser } from './helpers/browser.ts';
import { putChart } from './helpers/charts.ts';
import { kentikQuery, startService, type Service } from './helpers/service.ts';

const CHARTS = 14; // the page shows 12 at a time

let sim: Simulator;
let svc: Service;
let browser: BrowserContext;
let page: Page;
beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  svc = await startService({ KENTIK_API_URL: sim.url });
  // PDF charts: the page shows them as a link to the chart, so it fetches nothing on its own.
  for (let i = 0; i < CHARTS; i++) {
    const name = `c${String(i).padStart(2, '0')}`;
    const res = await putChart(svc.url, name, { api_query: kentikQuery(`pager-${i}`, 'pdf') });
    expect(res.status).toBe(201);
  }
  browser = await launchBrowser();
  page = browser.pages()[0] ?? (await browser.newPage());
  await page.setViewportSize({ width: 400, height: 860 });
});
afterAll(async () => {
  await browser?.close();
  await svc?.stop();
  await sim?.close();
});

const poll = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: 20_000, interval: 50 });
const names = (): Promise<Array<string | undefined>> =>
  page
    .locator('.chart-card')
    .evaluateAll((cards) => cards.map((c) => (c as HTMLElement).dataset.name));

describe('dashboard: many named charts', () => {
  it('pages through them by name with the keyboard, at 400 px', async () => {
    await page.goto(`${svc.url}/`);
    const first = Array.from({ length: 12 }, (_, i) => `c${String(i).padStart(2, '0')}`);
    await poll(names).toEqual(first);
    expect(await page.locator('#charts-summary').textContent()).toContain('Charts 1–12 of 14');
    const tile = page.locator('.chart-card[data-name="c00"] .pdf-tile');
    expect(await tile.getAttribute('href')).toBe('/charts/c00/image');
    expect(await page.locator('.chart-card[data-name="c00"] .state').textContent()).toBe('waiting');
    expect(await page.locator('#charts-prev').isDisabled()).toBe(true);

    await page.locator('#charts-more').focus();
    await page.keyboard.press('Enter');
    await poll(names).toEqual(['c12', 'c13']);
    expect(await page.locator('#charts-summary').textContent()).toContain('Charts 13–14 of 14');
    expect(await page.locator('#charts-more').isDisabled()).toBe(true);
    // Focus moves to the list, so a keyboard user continues from the new page.
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('charts-list');

    await page.locator('#charts-prev').click();
    await poll(names).toEqual(first);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(
      400,
    );
    // Listing charts costs Kentik nothing: no chart was viewed.
    expect(sim.stats().total).toBe(0);
  });
});
