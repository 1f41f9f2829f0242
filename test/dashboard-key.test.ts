/// <reference lib="dom" />
// The dashboard in a real headless Chromium against a service with API_KEYS: the page is open, its
// data needs the key; the page asks for it, keeps it for the tab and sends it as a Bearer token.
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { launchBrowser } from './helpers/browser.ts';
import { getImage, kentikQuery, postJson, startService, type Service } from './helpers/service.ts';

const KEY = 'dashboard-key-0123456789abcdef-SECRET';

let sim: Simulator;
let svc: Service;
let browser: BrowserContext;
let page: Page;
let id: string;

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  svc = await startService({ KENTIK_API_URL: sim.url, API_KEYS: `people:${KEY}` });
  const posted = await postJson(
    `${svc.url}/requests`,
    { api_query: kentikQuery('dash-key') },
    { authorization: `Bearer ${KEY}` },
  );
  expect(posted.status).toBe(200);
  id = posted.json.id;
  expect((await getImage(svc.url, id)).status).toBe(200);
  browser = await launchBrowser();
  page = browser.pages()[0] ?? (await browser.newPage());
});

afterAll(async () => {
  await browser?.close();
  await svc?.stop();
  await sim?.close();
  expect(svc.output.filter((l) => l.includes(KEY))).toEqual([]);
});

describe('dashboard with API_KEYS', () => {
  it('asks for the key, refuses a wrong one, then loads the charts and goes live', async () => {
    await page.goto(`${svc.url}/`);
    await page.locator('#key-form').waitFor({ state: 'visible' });
    expect(await page.locator('#st-live').textContent()).toContain('needs a key');
    expect(await page.locator(`#gallery [data-id="${id}"]`).count()).toBe(0);

    await page.fill('#api-key', 'not-the-key-0123456789abcdef');
    await page.click('#key-form button[type=submit]');
    await expect
      .poll(() => page.locator('#key-msg').textContent(), { timeout: 10_000 })
      .toContain('refused');
    await page.locator('#key-form').waitFor({ state: 'visible' });

    await page.fill('#api-key', KEY);
    await page.click('#key-form button[type=submit]');
    await page.locator('#st-live.on').waitFor();
    await page.locator(`#gallery [data-id="${id}"]`).waitFor();
    expect(await page.locator('#key-form').isVisible()).toBe(false);
  });

  it('keeps the key for the tab: a reload loads at once, without asking again', async () => {
    await page.reload();
    await page.locator('#st-live.on').waitFor();
    await page.locator(`#gallery [data-id="${id}"]`).waitFor();
    expect(await page.locator('#key-form').isVisible()).toBe(false);
  });
});
