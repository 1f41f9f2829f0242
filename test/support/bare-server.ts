/** The bare node:http reference as a process of its own (see references.ts, bare-image.ts). */
import { readFileSync } from 'node:fs';
import { bareImageServer } from './bare-image.ts';

const bytes = readFileSync(process.env.BARE_FILE ?? '');
const headers = JSON.parse(process.env.BARE_HEADERS ?? '[]') as string[];
bareImageServer(bytes, headers).listen(Number(process.env.BARE_PORT), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
