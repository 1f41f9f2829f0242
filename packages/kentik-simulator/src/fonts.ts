/**
 * Register the bundled DejaVu Sans (from @fontsource/dejavu-sans) with @napi-rs/canvas under a
 * private family name, so charts have readable text on machines without system fonts (slim
 * Docker images): Skia loads the package's WOFF2 files directly.
 */
import { createRequire } from 'node:module';
import { GlobalFonts } from '@napi-rs/canvas';

/** Family name charts use; registered under an alias so no system font is picked instead. */
export const CHART_FONT = 'KentikSimSans';

const FILES = [
  '@fontsource/dejavu-sans/files/dejavu-sans-latin-400-normal.woff2',
  '@fontsource/dejavu-sans/files/dejavu-sans-latin-700-normal.woff2',
];

let registered: boolean | undefined;

/**
 * Register the font once per process. Returns false (and charts fall back to whatever sans-serif
 * the system has) if a file is missing or Skia cannot read it.
 */
export function ensureFonts(): boolean {
  if (registered !== undefined) return registered;
  const require = createRequire(import.meta.url);
  registered = true;
  for (const spec of FILES) {
    try {
      if (GlobalFonts.registerFromPath(require.resolve(spec), CHART_FONT) === null)
        registered = false;
    } catch {
      registered = false;
    }
  }
  return registered;
}
