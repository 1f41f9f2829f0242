/**
 * Bodies of the "200 but broken" faults. Each kind cycles deterministically through a few
 * variants (call n of that fault gets variant n mod count), so tests can predict them.
 */

/** A real PNG signature + IHDR start, so truncated bodies look like a real answer cut short. */
const PNG_B64_START = 'iVBORw0KGgoAAAANSUhEUgAAA+gAAAH0CAYAAADL1t+K';

/** Content-type is application/json for all of them. */
export const MALFORMED_JSON_BODIES: readonly string[] = [
  // 0: the answer cut off mid-string (a dropped proxy connection).
  `{"dataUri": "data:image/png;base64,${PNG_B64_START}`,
  // 1: an HTML error page from a proxy, sent with 200 and a JSON content type.
  '<html><head><title>Service Unavailable</title></head><body><h1>Service Unavailable</h1></body></html>\n',
  // 2: empty body.
  '',
  // 3: JSON with a trailing comma and unquoted key.
  `{dataUri: "data:image/png;base64,${PNG_B64_START}",}`,
];

export const MALFORMED_DATA_URI_KINDS = [
  'bad-base64',
  'unknown-mime',
  'missing-prefix',
  'not-a-string',
] as const;

/** The JSON body of malformed-data-uri variant `n`. */
export function malformedDataUriBody(n: number): {
  kind: (typeof MALFORMED_DATA_URI_KINDS)[number];
  body: string;
} {
  const kind = MALFORMED_DATA_URI_KINDS[n % MALFORMED_DATA_URI_KINDS.length] ?? 'bad-base64';
  const dataUri: unknown = {
    // Characters outside the base64 alphabet.
    'bad-base64': 'data:image/png;base64,@@@@!!!!****',
    // A mime type Kentik never sends (BMP header bytes, valid base64).
    'unknown-mime': 'data:image/bmp;base64,Qk02AAAAAAAAADYAAAAoAAAA',
    // Base64 PNG without the "data:image/png;base64," prefix.
    'missing-prefix': `${PNG_B64_START}AAAA`,
    // dataUri is not a string at all.
    'not-a-string': null,
  }[kind];
  return { kind, body: JSON.stringify({ dataUri }) };
}

export function malformedJsonBody(n: number): string {
  return MALFORMED_JSON_BODIES[n % MALFORMED_JSON_BODIES.length] ?? '';
}
