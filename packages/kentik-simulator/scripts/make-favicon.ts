// Draws the service's icon (a small stacked traffic chart) and writes the repository's
// assets/favicon.ico (or the path given). It lives here because drawing needs @napi-rs/canvas,
// which only this package depends on; the service just serves the committed .ico.
// Run once with `npm run make-favicon -w kentik-simulator [-- <out.ico>]`.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createCanvas } from '@napi-rs/canvas';

function png(size: number): Buffer {
  const c = createCanvas(size, size);
  const g = c.getContext('2d');
  const s = size / 32;
  g.fillStyle = '#0b3d91';
  g.beginPath();
  g.roundRect(0, 0, size, size, 6 * s);
  g.fill();
  const layers: Array<[string, number[]]> = [
    ['#7fd3ff', [22, 18, 20, 12, 15, 9, 11, 6]],
    ['#37a3ff', [25, 22, 24, 18, 20, 15, 17, 13]],
    ['#ffffff', [28, 26, 27, 24, 25, 22, 23, 21]],
  ];
  for (const [color, ys] of layers.reverse()) {
    g.fillStyle = color;
    g.beginPath();
    g.moveTo(4 * s, 28 * s);
    ys.forEach((y, i) => g.lineTo((4 + (i * 24) / 7) * s, y * s));
    g.lineTo(28 * s, 28 * s);
    g.closePath();
    g.fill();
  }
  return c.toBuffer('image/png');
}

const images = [16, 32, 48].map((size) => ({ size, data: png(size) }));
const header = Buffer.alloc(6 + 16 * images.length);
header.writeUInt16LE(0, 0);
header.writeUInt16LE(1, 2);
header.writeUInt16LE(images.length, 4);
let offset = header.length;
images.forEach(({ size, data }, i) => {
  const o = 6 + 16 * i;
  header.writeUInt8(size, o);
  header.writeUInt8(size, o + 1);
  header.writeUInt16LE(1, o + 4);
  header.writeUInt16LE(32, o + 6);
  header.writeUInt32LE(data.length, o + 8);
  header.writeUInt32LE(offset, o + 12);
  offset += data.length;
});
const out =
  process.argv[2] ?? fileURLToPath(new URL('../../../assets/favicon.ico', import.meta.url));
writeFileSync(out, Buffer.concat([header, ...images.map((i) => i.data)]));
console.log(`wrote ${out}`);
