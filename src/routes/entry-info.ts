import { Type } from 'typebox';
import { INFO_TYPE, type Entry } from '../domain/entry.ts';
import { summarizeQuery, summaryLine, type QuerySummary } from '../domain/query-summary.ts';

export const QuerySummaryInfo = Type.Object(
  {
    title: Type.Optional(Type.String({ description: "The query's query_title" })),
    metrics: Type.Array(Type.String(), { description: 'e.g. ["bytes"]' }),
    dimensions: Type.Array(Type.String(), { description: 'e.g. ["AS_src"]' }),
    time: Type.String({ description: '"last 24 h", or "<start> → <end>"' }),
    devices: Type.String({ description: '"all devices" or the devices asked for' }),
    image_type: Type.String({ description: 'png, jpeg, svg or pdf' }),
    viz: Type.Optional(Type.String({ description: "Kentik's viz_type" })),
    text: Type.String({ description: 'All of the above as one line of words' }),
  },
  { description: 'The query in words' },
);

/** One entry as /info and the dashboard show it. Every field /info had before is kept as it was. */
export const EntryInfo = Type.Object({
  id: Type.String(),
  type: Type.Union([Type.Literal('image'), Type.Literal('api_error'), Type.Literal('api_request')]),
  size: Type.Integer({
    description: 'Bytes of image data (image), of the error message (api_error), or 0 (pending)',
  }),
  expiration: Type.Number({ description: 'Expiry as unix epoch seconds' }),
  mime: Type.Optional(Type.String()),
  status: Type.Optional(Type.Integer({ description: 'HTTP status served for an api_error entry' })),
  created: Type.Number({ description: 'When the id was issued, unix epoch seconds' }),
  query_summary: Type.Union([QuerySummaryInfo, Type.Null()], {
    description: 'The query in words; null for entries stored before summaries existed',
  }),
  served: Type.Integer({
    description: 'Times GET /image served this id since the process started',
  }),
  shares: Type.Integer({
    description:
      'Live pending or image ids of the same query, this one included: they share one fetch and one image (1 for an error, which is never shared)',
  }),
  error: Type.Optional(
    Type.Object(
      {
        status: Type.Integer({ description: "Kentik's status, or ours (504 timeout, 507 disk)" }),
        type: Type.String(),
        message: Type.String({ description: "Kentik's message, as GET /image serves it" }),
      },
      { description: 'Why the fetch failed (api_error only)' },
    ),
  ),
});

/** A query summary as the API shows it (entries here, named charts on the dashboard). */
export function querySummaryInfo(s: QuerySummary) {
  return {
    ...(s.title !== undefined ? { title: s.title } : {}),
    metrics: s.metrics,
    dimensions: s.dimensions,
    time: s.time,
    devices: s.devices,
    image_type: s.imageType,
    ...(s.viz !== undefined ? { viz: s.viz } : {}),
    text: summaryLine(s),
  };
}

export interface EntryExtras {
  served: number;
  shares: number;
}

export function describeEntry(entry: Entry, { served, shares }: EntryExtras) {
  // Entries stored before summaries existed: a pending one still has its query to summarize.
  const s =
    entry.summary ??
    (entry.kind === 'pending' ? summarizeQuery(JSON.parse(entry.query)) : undefined);
  const base = {
    id: entry.id,
    type: INFO_TYPE[entry.kind] as 'image' | 'api_error' | 'api_request',
    expiration: entry.expiresAt / 1000,
    created: entry.createdAt / 1000,
    query_summary: s ? querySummaryInfo(s) : null,
    served,
    shares,
  };
  switch (entry.kind) {
    case 'image':
      return { ...base, size: entry.size, mime: entry.mime };
    case 'error':
      return {
        ...base,
        size: Buffer.byteLength(entry.message),
        status: entry.status,
        error: { status: entry.status, type: entry.errorType, message: entry.message },
      };
    case 'pending':
      return { ...base, size: 0 };
  }
}
