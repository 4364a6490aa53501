import sharp from 'sharp';
const [file, left, top, width, height, out] = process.argv.slice(2);
await sharp(file).extract({ left: +left, top: +top, width: +width, height: +height }).toFile(out);
