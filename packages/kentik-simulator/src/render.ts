/**
 * Draw a query's chart with chart.js on @napi-rs/canvas and encode it as PNG, JPEG, SVG (text
 * converted to paths) or PDF. Pure: the bytes depend only on the body and the minute of `now`.
 */
import { type Canvas, createCanvas, PDFDocument, SvgExportFlag } from '@napi-rs/canvas';
import {
  Chart,
  registerables,
  type ChartConfiguration,
  type ChartDataset,
  type ChartItem,
  type Plugin,
} from 'chart.js';
import { queryHash } from './hash.ts';
import { FILTER_FIELD_LABELS } from './filters.ts';
import { CHART_FONT, ensureFonts } from './fonts.ts';
import { dimensionLabel } from './labels.ts';
import { type ChartData, type TimeWindow, generateChartData } from './series.ts';
import { chooseScale, formatValue } from './units.ts';
import {
  type KentikQuery,
  type KentikRequest,
  imageTypeOf,
  primaryQuery,
  validateRequest,
} from './validate.ts';

export const CHART_WIDTH = 1000;
export const CHART_HEIGHT = 500;
const JPEG_QUALITY = 90;

export const MIME = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  svg: 'image/svg+xml',
  pdf: 'application/pdf',
} as const;

/** Tableau 10 plus two: distinct, print-friendly, close to Kentik's categorical palette. */
const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#59a14f',
  '#e15759',
  '#76b7b2',
  '#edc948',
  '#b07aa1',
  '#ff9da7',
  '#9c755f',
  '#bab0ac',
  '#6b6ecf',
  '#d37295',
];
const TEXT = '#2d3138';
const MUTED = '#6b7280';
const GRID = '#e5e7eb';
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

let chartSetUp = false;
function setUpChartJs(): void {
  if (chartSetUp) return;
  chartSetUp = true;
  ensureFonts();
  Chart.register(...registerables);
  Chart.defaults.font.family = CHART_FONT;
  Chart.defaults.font.size = 12;
  Chart.defaults.color = TEXT;
  Chart.defaults.borderColor = GRID;
}

const whiteBackground: Plugin = {
  id: 'simWhiteBackground',
  beforeDraw(chart) {
    const { ctx, width, height } = chart;
    ctx.save();
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, width, height);
    ctx.restore();
  },
};

const pad2 = (n: number): string => String(n).padStart(2, '0');

function hhmm(t: number): string {
  const d = new Date(t);
  return `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
}
function monthDay(t: number): string {
  const d = new Date(t);
  return `${MONTHS[d.getUTCMonth()] ?? ''} ${d.getUTCDate()}`;
}
function ymdhm(t: number): string {
  const d = new Date(t);
  return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${hhmm(t)}`;
}

/** "15 min", "1 h", "6 h", "1 day", "7 days". */
export function durationLabel(seconds: number): string {
  if (seconds % 86400 === 0) return seconds === 86400 ? '1 day' : `${seconds / 86400} days`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

function windowLabel(w: TimeWindow): string {
  if (w.lookbackSeconds !== null) return `last ${durationLabel(w.lookbackSeconds)}`;
  return `${ymdhm(w.startMs)} to ${ymdhm(w.endMs)} UTC`;
}

/** Tick spacing for the time axis: a round step giving at most ~8 labels. */
const TICK_STEPS_MIN = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080];
function timeTickStep(spanMs: number): number {
  const min = TICK_STEPS_MIN.find((m) => spanMs / (m * 60_000) <= 8) ?? 10080;
  return min * 60_000;
}

function timeTicks(min: number, max: number, stepMs: number): Array<{ value: number }> {
  const ticks: Array<{ value: number }> = [];
  for (let t = Math.ceil(min / stepMs) * stepMs; t <= max; t += stepMs) ticks.push({ value: t });
  return ticks;
}

function timeTickLabel(t: number, spanMs: number, stepMs: number): string | string[] {
  if (stepMs >= 86_400_000) return monthDay(t);
  if (spanMs <= 86_400_000) return hhmm(t);
  return [hhmm(t), monthDay(t)];
}

function titleOf(q: KentikQuery, data: ChartData): string {
  const custom = typeof q.query_title === 'string' ? q.query_title.trim() : '';
  if (custom) return custom;
  const when = windowLabel(data.window);
  if (q.dimension.length === 1 && q.dimension[0] === 'Traffic') {
    return `Total traffic in ${data.info.title} — ${when}`;
  }
  return `Top ${data.series.length} ${q.dimension.map(dimensionLabel).join(' / ')} by ${data.info.title} — ${when}`;
}

function subtitleOf(q: KentikQuery, data: ChartData): string {
  const parts = ['Simulated Kentik data'];
  parts.push(`${durationLabel(data.window.stepMs / 1000)} buckets, UTC`);
  if (
    data.requested > data.series.length &&
    !(q.dimension.length === 1 && q.dimension[0] === 'Traffic')
  ) {
    parts.push(`showing ${data.series.length} of top ${data.requested}`);
  }
  const filters = q.filters?.filterGroups?.flatMap((g) => g.filters ?? []) ?? [];
  if (filters.length > 0) {
    const shown = filters
      .slice(0, 2)
      .map(
        (f) =>
          `${FILTER_FIELD_LABELS[f.filterField] ?? f.filterField} ${f.operator} ${String(f.filterValue)}`,
      )
      .join(', ');
    parts.push(`filters: ${shown}${filters.length > 2 ? ` +${filters.length - 2}` : ''}`);
  }
  if (q.all_devices === false && q.device_name && q.device_name.length > 0) {
    const names = typeof q.device_name === 'string' ? q.device_name.split(',') : q.device_name;
    parts.push(`devices: ${names.slice(0, 3).join(', ')}${names.length > 3 ? ' …' : ''}`);
  }
  if (typeof q.descriptor === 'string' && q.descriptor.trim()) parts.push(q.descriptor.trim());
  const s = parts.join('  ·  ');
  return s.length > 160 ? `${s.slice(0, 157)}...` : s;
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

function withAlpha(hex: string, alpha: number): string {
  const a = Math.round(alpha * 255)
    .toString(16)
    .padStart(2, '0');
  return `${hex}${a}`;
}

function color(i: number): string {
  return PALETTE[i % PALETTE.length] ?? '#4e79a7';
}

function plugins(title: string, subtitle: string, legend: object): ChartConfiguration['options'] {
  return {
    animation: false,
    responsive: false,
    maintainAspectRatio: false,
    devicePixelRatio: 1,
    layout: { padding: { left: 12, right: 28, top: 8, bottom: 8 } },
    plugins: {
      title: {
        display: true,
        text: title,
        align: 'start',
        color: TEXT,
        font: { size: 17, weight: 'bold' },
        padding: { top: 4, bottom: 2 },
      },
      subtitle: {
        display: true,
        text: subtitle,
        align: 'start',
        color: MUTED,
        font: { size: 11 },
        padding: { bottom: 10 },
      },
      legend,
      tooltip: { enabled: false },
    },
  };
}

/** Time-series chart: stacked area, line or stacked bars. */
function timeSeriesConfig(
  data: ChartData,
  viz: string,
  title: string,
  subtitle: string,
): ChartConfiguration {
  const { info, window: w } = data;
  const stacked = info.additive && (viz === 'stackedArea' || viz === 'stackedBar');
  const bars = viz === 'stackedBar';
  const area = stacked && !bars;
  const maxY = stacked
    ? Math.max(
        0,
        ...w.times.map((_, i) => data.series.reduce((s, ser) => s + (ser.values[i] ?? 0), 0)),
      )
    : Math.max(0, ...data.series.map((s) => s.max));
  const scale = chooseScale(maxY, info);
  const span = (w.times[w.times.length - 1] ?? w.endMs) - (w.times[0] ?? w.startMs);
  const tickStep = timeTickStep(span);

  const datasets = data.series.map((s, i) => {
    const c = color(i);
    const points = s.values.map((y, j) => ({ x: w.times[j] ?? 0, y }));
    const label = `${truncate(s.name, 48)}   avg ${formatValue(s.avg, info)}`;
    if (bars) {
      return {
        type: 'bar' as const,
        label,
        data: points,
        backgroundColor: c,
        borderWidth: 0,
        barPercentage: 1,
        categoryPercentage: 0.85,
      };
    }
    return {
      type: 'line' as const,
      label,
      data: points,
      borderColor: c,
      backgroundColor: area ? withAlpha(c, 0.82) : c,
      borderWidth: area ? 1 : 1.8,
      pointRadius: 0,
      tension: 0,
      fill: area ? (i === 0 ? 'origin' : '-1') : false,
    };
  });

  const legend = {
    position: 'bottom',
    align: 'start',
    labels: { boxWidth: 12, boxHeight: 12, padding: 10, font: { size: 11 }, color: TEXT },
  };
  const options = plugins(title, subtitle, legend);
  return {
    type: bars ? 'bar' : 'line',
    data: { datasets: datasets as ChartDataset[] },
    options: {
      ...options,
      scales: {
        x: {
          type: 'linear',
          // Bars are centred on their bucket time: leave half a bucket free at both ends.
          min: (w.times[0] ?? w.startMs) - (bars ? w.stepMs / 2 : 0),
          max: (w.times[w.times.length - 1] ?? w.endMs) + (bars ? w.stepMs / 2 : 0),
          offset: false,
          stacked,
          grid: { color: GRID, drawTicks: true },
          border: { color: '#9ca3af' },
          // Round UTC times (every 10 min, 1 h, 1 day...), not chart.js's numeric "nice" steps.
          afterBuildTicks: (axis: { ticks: Array<{ value: number }> }) => {
            axis.ticks = timeTicks(
              w.times[0] ?? w.startMs,
              w.times[w.times.length - 1] ?? w.endMs,
              tickStep,
            );
          },
          ticks: {
            maxRotation: 0,
            autoSkip: false,
            color: MUTED,
            callback: (v) => timeTickLabel(Number(v), span, tickStep),
          },
        },
        y: {
          type: 'linear',
          beginAtZero: true,
          stacked,
          grace: '5%',
          grid: { color: GRID },
          border: { display: false },
          ticks: {
            color: MUTED,
            maxTicksLimit: 7,
            callback: (v) => formatValue(Number(v), info, scale),
          },
        },
      },
    } as ChartConfiguration['options'],
  };
}

/** One value per series (window average): vertical bars, horizontal ranking or doughnut. */
function rankingConfig(
  data: ChartData,
  viz: string,
  title: string,
  subtitle: string,
): ChartConfiguration {
  const { info } = data;
  const values = data.series.map((s) => s.avg);
  const colors = data.series.map((_, i) => color(i));
  const scale = chooseScale(Math.max(0, ...values), info);
  if (viz === 'pie') {
    const legend = {
      position: 'right',
      align: 'center',
      labels: {
        boxWidth: 12,
        boxHeight: 12,
        padding: 10,
        font: { size: 11 },
        color: TEXT,
        generateLabels: () =>
          data.series.map((s, i) => ({
            text: `${truncate(s.name, 44)}   ${formatValue(s.avg, info)}`,
            fillStyle: colors[i],
            strokeStyle: '#ffffff',
            lineWidth: 1,
            hidden: false,
            index: i,
          })),
      },
    };
    return {
      type: 'doughnut',
      data: {
        labels: data.series.map((s) => s.name),
        datasets: [
          { data: values, backgroundColor: colors, borderColor: '#ffffff', borderWidth: 2 },
        ],
      },
      options: {
        ...plugins(title, subtitle, legend),
        cutout: '55%',
      } as ChartConfiguration['options'],
    };
  }
  const horizontal = viz !== 'bar';
  const valueAxis = {
    type: 'linear',
    beginAtZero: true,
    grace: '5%',
    grid: { color: GRID },
    border: { display: false },
    ticks: {
      color: MUTED,
      maxTicksLimit: 7,
      callback: (v: unknown) => formatValue(Number(v), info, scale),
    },
  };
  const nameAxis = {
    type: 'category',
    grid: { display: false },
    border: { color: '#9ca3af' },
    ticks: {
      color: TEXT,
      autoSkip: false,
      maxRotation: horizontal ? 0 : 35,
      font: { size: 11 },
      callback(this: { getLabelForValue(v: number): string }, v: unknown) {
        return truncate(this.getLabelForValue(Number(v)), horizontal ? 40 : 26);
      },
    },
  };
  return {
    type: 'bar',
    data: {
      labels: data.series.map((s) => s.name),
      datasets: [
        {
          label: `avg ${info.title}`,
          data: values,
          backgroundColor: colors,
          borderWidth: 0,
          barPercentage: 0.8,
          categoryPercentage: 0.9,
        },
      ],
    },
    options: {
      ...plugins(title, subtitle, { display: false }),
      layout: { padding: { left: 12, right: horizontal ? 72 : 20, top: 8, bottom: 8 } },
      indexAxis: horizontal ? 'y' : 'x',
      scales: horizontal ? { x: valueAxis, y: nameAxis } : { x: nameAxis, y: valueAxis },
    } as ChartConfiguration['options'],
  };
}

const TIME_SERIES_VIZ = new Set(['stackedArea', 'line', 'stackedBar']);

/**
 * What the traffic of a chart is derived from: the whole body except its image type, so one
 * query gives the same numbers as PNG, JPEG, SVG and PDF (Kentik draws the same data whatever the
 * encoding).
 */
export function chartSeed(body: KentikRequest): string {
  const { imageType: _imageType, ...rest } = body;
  return queryHash(rest);
}

/** The chart.js configuration for a request (exported for tests and debugging). */
export function chartConfig(body: KentikRequest, now: Date = new Date()): ChartConfiguration {
  const q = primaryQuery(body);
  const viz = q.viz_type ?? 'stackedArea';
  const timeSeries = TIME_SERIES_VIZ.has(viz);
  const data = generateChartData(chartSeed(body), q, now, viz === 'stackedBar' ? 60 : 300);
  const title = titleOf(q, data);
  const subtitle = subtitleOf(q, data);
  const config = timeSeries
    ? timeSeriesConfig(data, viz, title, subtitle)
    : rankingConfig(data, viz, title, subtitle);
  config.plugins = [whiteBackground];
  return config;
}

/**
 * Skia numbers SVG clip paths (and gradients, patterns) from a process-wide counter, so the
 * same chart drawn twice gets different ids. Renumber them in order of appearance so SVG bytes
 * are deterministic like the other formats.
 */
export function normalizeSvgIds(svg: string): string {
  const ids = new Map<string, string>();
  for (const m of svg.matchAll(/\bid="([A-Za-z]+)_([0-9A-Za-z]+)"/g)) {
    const [, prefix = 'id', old = ''] = m;
    if (!ids.has(`${prefix}_${old}`)) ids.set(`${prefix}_${old}`, `${prefix}_${ids.size}`);
  }
  if (ids.size === 0) return svg;
  return svg.replace(/\b([A-Za-z]+_[0-9A-Za-z]+)\b/g, (id) => ids.get(id) ?? id);
}

function draw(target: object, config: ChartConfiguration): Chart {
  return new Chart(target as ChartItem, config);
}

let warmed: Promise<void> | undefined;

/**
 * Render one small chart so the first real request does not pay for chart.js setup, font
 * loading and Skia's first use (~100 ms more than later renders).
 */
export function warmUp(): Promise<void> {
  warmed ??= renderChart(
    {
      queries: [
        {
          bucket: 'Left +Y Axis',
          query: { metric: 'bytes', dimension: ['Traffic'], lookback_seconds: 600 },
        },
      ],
      imageType: 'png',
    },
    new Date(0),
  ).then(
    () => undefined,
    () => undefined, // a broken renderer shows up on the first real request instead
  );
  return warmed;
}

/**
 * Draw any chart.js configuration as an SVG, for charts that are not Kentik queries (the
 * benchmark draws its results with it). Text stays text, in the bundled font's family (DejaVu
 * Sans, which a viewer without it replaces): converted to paths, a chart with a few dozen labels
 * would weigh a megabyte.
 */
export function renderSvg(config: ChartConfiguration, width: number, height: number): Buffer {
  const plugins = [...(config.plugins ?? []), whiteBackground];
  return drawSvg({ ...config, plugins }, width, height, SvgExportFlag.NoPrettyXML);
}

function drawSvg(
  config: ChartConfiguration,
  width: number,
  height: number,
  flag: SvgExportFlag,
): Buffer {
  setUpChartJs();
  const canvas = createCanvas(width, height, flag);
  const chart = draw(canvas, config);
  try {
    return Buffer.from(normalizeSvgIds(canvas.getContent().toString('utf8')), 'utf8');
  } finally {
    chart.destroy();
  }
}

/** A canvas-like object around a PDF page's context: chart.js needs `ctx.canvas`. */
function pdfCanvas(ctx: object, width: number, height: number): object {
  const canvas = { width, height, style: {}, getContext: () => ctx };
  Object.defineProperty(ctx, 'canvas', { value: canvas, configurable: true });
  return canvas;
}

/**
 * Render the chart for a valid topXchart body. `now` fixes the end of a lookback window (it is
 * rounded down to the minute), so the same body and minute always give the same bytes.
 */
export async function renderChart(
  body: KentikRequest,
  now: Date = new Date(),
): Promise<{ mime: string; bytes: Buffer }> {
  const check = validateRequest(body);
  if (!check.ok) throw new TypeError(check.message);
  setUpChartJs();
  const config = chartConfig(body, now);
  const type = imageTypeOf(body);
  const w = CHART_WIDTH;
  const h = CHART_HEIGHT;

  if (type === 'svg')
    return { mime: MIME.svg, bytes: drawSvg(config, w, h, SvgExportFlag.ConvertTextToPaths) };
  if (type === 'pdf') {
    const q = primaryQuery(body);
    const doc = new PDFDocument({
      title: typeof q.query_title === 'string' && q.query_title ? q.query_title : 'Kentik chart',
      creator: 'kentik-image-cache simulator',
      subject: 'Simulated Kentik topXchart',
    });
    const ctx = doc.beginPage(w, h);
    const chart = draw(pdfCanvas(ctx, w, h), config);
    doc.endPage();
    const bytes = doc.close();
    chart.destroy();
    return { mime: MIME.pdf, bytes };
  }
  const canvas: Canvas = createCanvas(w, h);
  const chart = draw(canvas, config);
  try {
    const bytes =
      type === 'jpeg' ? await canvas.encode('jpeg', JPEG_QUALITY) : await canvas.encode('png');
    return { mime: MIME[type], bytes };
  } finally {
    chart.destroy();
  }
}
