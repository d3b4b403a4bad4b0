// png8.mjs -- make a screenshot small enough to commit: an 8-bit RGB(A) PNG (what Chromium
// writes) re-encoded with a palette of at most 256 colours, the most frequent ones, every
// other colour drawn as its nearest (a page's text has few colours besides its
// anti-aliasing, so the picture looks the same at a fraction of the size).
import { deflateSync, inflateSync } from "node:zlib";

const SIG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

// CRC-32 of PNG chunks
const CRC = new Int32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});
function crc32(buf) {
  let c = -1;
  for (const b of buf) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, "ascii");
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/* Decode an 8-bit, non-interlaced RGB or RGBA PNG into {width, height, rgb}. */
function decode(png) {
  if (!png.subarray(0, 8).equals(SIG)) throw new Error("not a PNG");
  let at = 8, width = 0, height = 0, type = 0;
  const idat = [];
  while (at < png.length) {
    const len = png.readUInt32BE(at), kind = png.toString("ascii", at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + len);
    if (kind === "IHDR") {
      width = data.readUInt32BE(0); height = data.readUInt32BE(4); type = data[9];
      if (data[8] !== 8 || (type !== 2 && type !== 6) || data[12] !== 0) throw new Error("only 8-bit RGB(A), not interlaced");
    } else if (kind === "IDAT") idat.push(data);
    at += 12 + len;
  }
  const bpp = type === 6 ? 4 : 3, stride = width * bpp, raw = inflateSync(Buffer.concat(idat));
  const px = Buffer.alloc(stride * height), rgb = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)], src = y * (stride + 1) + 1, row = y * stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? px[row + x - bpp] : 0, b = y ? px[row - stride + x] : 0;
      const c = x >= bpp && y ? px[row - stride + x - bpp] : 0;
      let p = raw[src + x];
      if (f === 1) p += a;
      else if (f === 2) p += b;
      else if (f === 3) p += (a + b) >> 1;
      else if (f === 4) { const q = a + b - c, pa = Math.abs(q - a), pb = Math.abs(q - b), pc = Math.abs(q - c); p += pa <= pb && pa <= pc ? a : pb <= pc ? b : c; }
      px[row + x] = p & 0xff;
    }
    for (let x = 0; x < width; x++) px.copy(rgb, (y * width + x) * 3, row + x * bpp, row + x * bpp + 3);
  }
  return { width, height, rgb };
}

/* The PNG png as a palette PNG. */
export function toPalette(png) {
  const { width, height, rgb } = decode(png);
  const count = new Map();
  for (let i = 0; i < rgb.length; i += 3) {
    const k = (rgb[i] << 16) | (rgb[i + 1] << 8) | rgb[i + 2];
    count.set(k, (count.get(k) || 0) + 1);
  }
  const pal = [...count].sort((a, b) => b[1] - a[1]).slice(0, 256).map(([k]) => k);
  const index = new Map(pal.map((k, i) => [k, i]));
  for (const k of count.keys()) {
    if (index.has(k)) continue;
    let best = 0, bd = Infinity;
    for (let i = 0; i < pal.length; i++) {
      const dr = (k >> 16) - (pal[i] >> 16), dg = ((k >> 8) & 255) - ((pal[i] >> 8) & 255), db = (k & 255) - (pal[i] & 255);
      const d = 3 * dr * dr + 4 * dg * dg + 2 * db * db;
      if (d < bd) { bd = d; best = i; }
    }
    index.set(k, best);
  }
  const raw = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      raw[y * (width + 1) + 1 + x] = index.get((rgb[i] << 16) | (rgb[i + 1] << 8) | rgb[i + 2]);
    }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; ihdr[9] = 3; // 8-bit palette
  const plte = Buffer.alloc(pal.length * 3);
  pal.forEach((k, i) => { plte[3 * i] = k >> 16; plte[3 * i + 1] = (k >> 8) & 255; plte[3 * i + 2] = k & 255; });
  return Buffer.concat([SIG, chunk("IHDR", ihdr), chunk("PLTE", plte), chunk("IDAT", deflateSync(raw, { level: 9 })), chunk("IEND", Buffer.alloc(0))]);
}
