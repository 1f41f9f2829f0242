/// <reference lib="dom" />
// The dashboard in a real headless Chromium, against the real service and the Kentik simulator.
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { launchBrowser } from './helpers/browser.ts';
import { chartImage, putChart } from './helpers/charts.ts';
import { startGateProxy, type GateProxy } from './helpers/gate-proxy.ts';
import {
  getImage,
  kentikQuery,
  requestImage,
  startService,
  type Service,
} from './helpers/service.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
/** Where the tests leave their screenshots (git-ignored); docs/ holds a chosen one. */
const SHOTS = path.join(ROOT, 'test-results');
const DEFAULT_TTL = 900;

const badQuery = (
  JSON.parse(
    readFileSync(path.join(ROOT, 'examples/queries/13-invalid-metric-buckets.json'), 'utf8'),
  ) as { api_query: unknown }
).api_query;

let sim: Simulator;
let gate: GateProxy;
let svc: Service;
let browser: BrowserContext;
let page: Page;
const ids: Record<string, string> = {};
const consoleErrors: string[] = [];
const foreignRequests: string[] = [];
const entriesRequests: string[] = [];

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  gate = await startGateProxy(sim.url);
  svc = await startService({
    KENTIK_API_URL: gate.url,
    KENTIK_API_RETRIES: '0',
    DEFAULT_TTL: String(DEFAULT_TTL),
  });
  for (const type of ['png', 'jpeg', 'svg', 'pdf'])
    ids[type] = await requestImage(svc.url, kentikQuery(`dash-${type}`, type));
  ids.bad = await requestImage(svc.url, badQuery);
  for (const id of Object.values(ids)) await getImage(svc.url, id); // waits until each settled

  browser = await launchBrowser();
  page = browser.pages()[0] ?? (await browser.newPage());
  await page.setViewportSize({ width: 1400, height: 1000 });
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // Chromium logs every 4xx answer to fetch(); the form test provokes exactly one on purpose.
    const deliberate =
      m.text().startsWith('Failed to load resource: the server responded with a status of 400') &&
      m.location().url === `${svc.url}/requests`;
    if (!deliberate) consoleErrors.push(`${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    if (!r.url().startsWith(`${svc.url}/`)) foreignRequests.push(r.url());
    if (r.url().includes('/dashboard/api/entries'))
      entriesRequests.push(`${new Date().toISOString()} ${r.url()}`);
  });
  await page.goto(`${svc.url}/`);
  await page.locator('#st-live.on').waitFor();
});

afterAll(async () => {
  await browser?.close();
  await svc?.stop();
  await gate?.close();
  await sim?.close();
});

/** expect.poll with room for a loaded machine (its default gives up after one second). */
const poll = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: 20_000, interval: 50 });
const shownIds = (): Promise<string[]> =>
  page.locator('.card').evaluateAll((cards) => cards.map((c) => (c as HTMLElement).dataset.id!));

const card = (id: string) => page.locator(`.card[data-id="${id}"]`);
const imageLoaded = (id: string) =>
  page.waitForFunction((id) => {
    const img = document.querySelector<HTMLImageElement>(`.card[data-id="${id}"] img`);
    return img !== null && img.complete && img.naturalWidth > 0;
  }, id);

describe('dashboard', () => {
  it('is served with a strict CSP and nosniff, and only from our origin', async () => {
    for (const url of ['/', '/dashboard/app.js', '/dashboard/style.css']) {
      const res = await fetch(`${svc.url}${url}`);
      expect(res.status).toBe(200);
      const csp = res.headers.get('content-security-policy') ?? '';
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain('unsafe-inline');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    }
    const html = await (await fetch(`${svc.url}/`)).text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//); // nothing from another host
  });

  it('shows the charts as loaded images with alt text, PDFs as a tile, and queries in words', async () => {
    for (const type of ['png', 'jpeg', 'svg']) {
      await imageLoaded(ids[type]!);
      const alt = await card(ids[type]!).locator('img').getAttribute('alt');
      expect(alt).toContain(`test query dash-${type}`);
    }
    const pdf = card(ids.pdf!);
    await poll(() => pdf.locator('.pdf-tile').getAttribute('href')).toBe(`/image/${ids.pdf}`);
    const png = card(ids.png!);
    expect(await png.locator('.title').textContent()).toBe('test query dash-png');
    const line = (await png.locator('.line').textContent()) ?? '';
    expect(line).toContain('all devices');
    expect(line).toContain('PNG');
    expect(await png.locator('.state').textContent()).toBe('ready');
    expect(await png.locator('.served').textContent()).toMatch(/^[1-9]\d*×$/);
    expect(await png.locator('.shares').textContent()).toBe('1');
    expect(await png.locator('.size').textContent()).toMatch(/KB$/);
    expect(await png.locator('.left').textContent()).toMatch(/^1[45]:\d\d$/);
    // The status bar.
    const status = (await page.locator('#status').textContent()) ?? '';
    expect(status).toContain('4 ready');
    expect(status).toContain('1 failed');
    expect(status).toContain('Backend: filesystem');
    expect(status).toMatch(/5 calls, 1 error/);
    expect(status).toContain('last error 400');
  });

  it("shows a failure with Kentik's status and message, and filters to failures only", async () => {
    const bad = card(ids.bad!);
    await poll(() => bad.getAttribute('data-state')).toBe('failed');
    expect(await bad.locator('.thumb').textContent()).toContain('Kentik said 400');
    expect(await bad.locator('.error').textContent()).toContain(
      "Kentik API answered 400: Invalid metric 'buckets'",
    );
    await page.locator('#failures').check();
    await poll(shownIds).toEqual([ids.bad]);
    await page.locator('#failures').uncheck();
    await poll(() => page.locator('.card').count()).toBe(5);
  });

  it('searches by query text and filters by image type', async () => {
    await page.locator('#q').fill('dash-svg');
    await poll(shownIds).toEqual([ids.svg]);
    await page.locator('#q').fill('');
    await poll(() => page.locator('.card').count()).toBe(5);
    await page.locator('#type').selectOption('pdf');
    await poll(shownIds).toEqual([ids.pdf]);
    await page.locator('#type').selectOption('');
    await poll(() => page.locator('.card').count()).toBe(5);
  });

  it('turns a pending entry into an image without a reload and without polling', async () => {
    await page.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));
    gate.hold();
    let id: string;
    try {
      id = await requestImage(svc.url, kentikQuery('dash-pending'));
      await gate.waiting(1);
    } catch (err) {
      gate.release();
      throw err;
    }
    // The 'created' event brings it onto the page, pending.
    await poll(() => card(id).getAttribute('data-state')).toBe('pending');
    expect(await card(id).locator('.thumb').textContent()).toContain('Fetching from Kentik');
    const before = entriesRequests.length;
    gate.release(); // (afterAll releases it too, should an assertion above fail)
    await imageLoaded(id);
    expect(await card(id).getAttribute('data-state')).toBe('ready');
    // Updated in place from the 'settled' event: no reload, no new page request.
    expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(
      true,
    );
    expect(entriesRequests.slice(before)).toEqual([]);
  });

  it('creates a chart from the form, with DEFAULT_TTL, and shows errors inline', async () => {
    await page.locator('#new-chart summary').click();
    expect(await page.locator('#ttl').inputValue()).toBe(String(DEFAULT_TTL));
    // Invalid JSON: the browser's parser message, inline.
    await page.locator('#query').fill('{"queries": [');
    await page.locator('#submit').click();
    await poll(() => page.locator('#form-error').textContent()).toContain('not valid JSON');
    // A 4xx from /requests: the service's own message, inline.
    await page.locator('#query').fill('[1, 2]');
    await page.locator('#submit').click();
    await poll(() => page.locator('#form-error').textContent()).toContain(
      '400 Validation error: api_query must be a JSON object',
    );
    // An example from examples/queries/.
    const label = await page
      .locator('#example option', { hasText: '12-source-countries-pie-png.json' })
      .textContent();
    await page.locator('#example').selectOption({ label: label! });
    expect(await page.locator('#query').inputValue()).toContain('"queries"');
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/requests')),
      page.locator('#submit').click(),
    ]);
    expect(response.status()).toBe(200);
    expect(JSON.parse(response.request().postData() ?? '{}').ttl).toBe(DEFAULT_TTL);
    const { id } = (await response.json()) as { id: string };
    expect(await page.locator('#form-error').isHidden()).toBe(true);
    await imageLoaded(id);
    expect(await card(id).locator('.title').textContent()).toBe('in_bytes by Geography_src');
  });

  it('copies the image URL, a Markdown and an HTML snippet', async () => {
    await browser.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: svc.url });
    const c = card(ids.png!);
    const url = `${svc.url}/image/${ids.png}`;
    const clipboard = (): Promise<string> => page.evaluate(() => navigator.clipboard.readText());
    await c.locator('[data-copy=url]').click();
    await poll(clipboard).toBe(url);
    await c.locator('[data-copy=markdown]').click();
    await poll(clipboard).toBe(`![test query dash-png](${url})`);
    // By keyboard too.
    await c.locator('[data-copy=html]').focus();
    await page.keyboard.press('Enter');
    await poll(clipboard).toBe(`<img src="${url}" alt="test query dash-png">`);
    // A failure has nothing to share.
    expect(await card(ids.bad!).locator('[data-copy=url]').isDisabled()).toBe(true);
  });

  it('lists named charts: live thumbnail, query in words, state, last error, and share buttons for the stable URL', async () => {
    const define = async (name: string, api_query: unknown, refresh?: number) =>
      expect((await putChart(svc.url, name, { api_query, refresh })).status).toBe(201);
    await define('core-traffic', kentikQuery('dash-chart'), 600);
    await define('broken', badQuery);
    // The broken chart's first refresh fails before the page opens (so the page shows the failure
    // rather than an image request that answers 400); core-traffic has no image until the page asks.
    expect((await chartImage(svc.url, 'broken')).status).toBe(400);
    await page.goto(`${svc.url}/`);
    await page.locator('#st-live.on').waitFor();
    const chart = (name: string) => page.locator(`.chart-card[data-name="${name}"]`);
    await poll(() =>
      page
        .locator('.chart-card')
        .evaluateAll((cards) => cards.map((c) => (c as HTMLElement).dataset.name)),
    ).toEqual(['broken', 'core-traffic']);
    expect(await page.locator('#charts-summary').textContent()).toContain('2 named charts');

    // The thumbnail is the chart's own URL, and it loads (the first view fetches the image).
    await page.waitForFunction(() => {
      const img = document.querySelector<HTMLImageElement>(
        '.chart-card[data-name="core-traffic"] img',
      );
      return img !== null && img.complete && img.naturalWidth > 0;
    });
    const core = chart('core-traffic');
    expect(await core.locator('img').getAttribute('src')).toMatch(
      /^\/charts\/core-traffic\/image(\?v=[\d.]+)?$/,
    );
    expect(await core.locator('img').getAttribute('alt')).toContain('test query dash-chart');
    expect(await core.locator('.title').textContent()).toBe('core-traffic');
    const line = (await core.locator('.line').textContent()) ?? '';
    expect(line).toContain('test query dash-chart');
    expect(line).toContain('all devices');
    expect(await core.locator('.refresh').textContent()).toBe('every 10 min');
    // Once the refresh lands the list shows it: fresh, drawn seconds ago.
    await poll(() => core.locator('.state').textContent()).toBe('fresh');
    expect(await core.locator('.drawn').textContent()).toMatch(/^\d+ s ago$/);
    expect(await core.locator('.error').isHidden()).toBe(true);

    const broken = chart('broken');
    expect(await broken.locator('.state').textContent()).toBe('failing');
    expect(await broken.locator('.thumb').textContent()).toContain('Kentik said 400');
    expect(await broken.locator('.error').textContent()).toContain(
      "Kentik API answered 400: Invalid metric 'buckets'",
    );
    expect(await broken.locator('.drawn').textContent()).toBe('—');

    // Share: the stable URL (never an id that expires), as text, Markdown and HTML.
    await browser.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: svc.url });
    const url = `${svc.url}/charts/core-traffic/image`;
    const clipboard = (): Promise<string> => page.evaluate(() => navigator.clipboard.readText());
    await core.locator('[data-copy=url]').click();
    await poll(clipboard).toBe(url);
    await core.locator('[data-copy=markdown]').click();
    await poll(clipboard).toBe(`![test query dash-chart](${url})`);
    await core.locator('[data-copy=html]').focus();
    await page.keyboard.press('Enter');
    await poll(clipboard).toBe(`<img src="${url}" alt="test query dash-chart">`);
    expect((await fetch(url)).headers.get('content-type')).toBe('image/png');
  });

  it('is usable with the keyboard alone', async () => {
    await page.locator('body').focus();
    const reached = new Set<string>();
    for (let i = 0; i < 80; i++) {
      await page.keyboard.press('Tab');
      reached.add(
        await page.evaluate(() => {
          const el = document.activeElement as HTMLElement | null;
          return el ? `${el.tagName.toLowerCase()}#${el.id}:${el.dataset.copy ?? ''}` : '';
        }),
      );
    }
    for (const want of ['a#:', 'input#q:', 'select#type:', 'input#failures:', 'button#:url'])
      expect([...reached]).toContain(want);
    expect([...reached].some((r) => r.startsWith('summary'))).toBe(true);
  });

  it('looks right at 1400 px and at 400 px (screenshots in test-results/)', async () => {
    mkdirSync(SHOTS, { recursive: true });
    await page.locator('#new-chart').evaluate((d) => ((d as HTMLDetailsElement).open = false));
    // A clean picture: no focus ring or toast left over from the tests above.
    await page.evaluate(() => {
      (document.activeElement as HTMLElement | null)?.blur();
      document.getElementById('toast')!.hidden = true;
    });
    for (const width of [1400, 400]) {
      await page.setViewportSize({ width, height: width === 400 ? 860 : 1000 });
      await page.evaluate(() => window.scrollTo(0, 0));
      // Nothing wider than the window: no sideways scrolling on a phone.
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(
        width,
      );
      for (const id of [ids.png!, ids.jpeg!]) await imageLoaded(id);
      await page.screenshot({ path: path.join(SHOTS, `dashboard-${width}.png`) });
    }
    await page.setViewportSize({ width: 1400, height: 1000 });
  });

  it('made no request outside its origin and logged no console error', () => {
    expect(foreignRequests).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });
});
