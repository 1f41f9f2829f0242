/**
 * The project's root (where assets/ and examples/ are), found from this module's own URL. This file
 * sits directly in src/, and the build writes the server to directly in dist/, so one `..` is the
 * root from source (tsx), from a per-file build and from the bundle alike.
 */
export const ROOT_URL = new URL('../', import.meta.url);
