// Draws the project's icon (a small stacked traffic chart) and writes assets/favicon.ico.
// Run once with `npx tsx scripts/make-favicon.ts`; the .ico is committed.
import { writeFileSync } from 'node:fs';
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
writeFileSync(
  new URL('../assets/favicon.ico', import.meta.url),
  Buffer.concat([header, ...images.map((i) => i.data)]),
);
console.log('wrote assets/favicon.ico');
