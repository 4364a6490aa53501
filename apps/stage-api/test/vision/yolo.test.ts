import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import t from 'tap';
import {
  COCO_CLASSES,
  decodeYoloEndToEnd,
  decodeYoloRaw,
  letterbox,
  nms,
  unletterbox,
  YoloDetector,
} from '../../src/vision/index.js';
import { solid } from './helpers.js';

/** The few ONNX (onnx.proto3) messages needed to build a model whose output is a constant. */
const ONNX_PROTO = `
syntax = "proto3";
package onnx;
message OperatorSetIdProto { string domain = 1; int64 version = 2; }
message TensorProto { repeated int64 dims = 1; int32 data_type = 2; string name = 8; bytes raw_data = 9; }
message TensorShapeProto { message Dimension { oneof value { int64 dim_value = 1; string dim_param = 2; } } repeated Dimension dim = 1; }
message TypeProto { message Tensor { int32 elem_type = 1; TensorShapeProto shape = 2; } oneof value { Tensor tensor_type = 1; } }
message ValueInfoProto { string name = 1; TypeProto type = 2; }
message NodeProto { repeated string input = 1; repeated string output = 2; string name = 3; string op_type = 4; }
message GraphProto { repeated NodeProto node = 1; string name = 2; repeated TensorProto initializer = 5; repeated ValueInfoProto input = 11; repeated ValueInfoProto output = 12; }
message ModelProto { int64 ir_version = 1; string producer_name = 2; GraphProto graph = 7; repeated OperatorSetIdProto opset_import = 8; }
`;

/** A model with input `images` [1,3,size,size] whose output is the given constant (Identity of an initializer). */
function constantModel(size: number, dims: number[], values: Float32Array): Uint8Array {
  const root = protobuf.parse(ONNX_PROTO, { keepCase: true }).root;
  const Model = root.lookupType('onnx.ModelProto');
  const valueInfo = (name: string, shape: number[]) => ({
    name,
    type: { tensor_type: { elem_type: 1, shape: { dim: shape.map((d) => ({ dim_value: d })) } } },
  });
  const msg = Model.create({
    ir_version: 8,
    producer_name: 'feedly-test',
    opset_import: [{ domain: '', version: 13 }],
    graph: {
      name: 'constant_yolo',
      node: [{ input: ['const_out'], output: ['output0'], name: 'identity', op_type: 'Identity' }],
      initializer: [
        {
          name: 'const_out',
          dims,
          data_type: 1,
          raw_data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
        },
      ],
      input: [valueInfo('images', [1, 3, size, size])],
      output: [valueInfo('output0', dims)],
    },
  });
  return Model.encode(msg).finish();
}

t.test('letterbox: scale, padding and the NCHW layout', async (t) => {
  const img = solid(640, 320, [255, 0, 0]);
  const { tensor, info } = letterbox(img, 320);
  t.same(info, { size: 320, scale: 0.5, padX: 0, padY: 80, newWidth: 320, newHeight: 160 });
  const plane = 320 * 320;
  t.equal(tensor.length, 3 * plane);
  t.equal(tensor[0], Math.fround(114 / 255), 'padding is grey 114');
  const centre = 160 * 320 + 160;
  t.equal(tensor[centre], 1, 'red channel of the picture');
  t.equal(tensor[plane + centre], 0, 'green channel');
  const back = unletterbox({ x: 80, y: 150, w: 40, h: 20 }, info, 640, 320);
  t.same(back, { x: 160, y: 140, w: 80, h: 40 });
  const clipped = unletterbox({ x: -10, y: 70, w: 40, h: 20 }, info, 640, 320);
  t.same(clipped, { x: 0, y: 0, w: 60, h: 20 }, 'clipped to the image');
});

t.test('nms keeps the best box per class and different classes apart', async (t) => {
  const kept = nms(
    [
      { classId: 1, score: 0.6, box: { x: 2, y: 2, w: 10, h: 10 } },
      { classId: 1, score: 0.9, box: { x: 0, y: 0, w: 10, h: 10 } },
      { classId: 2, score: 0.5, box: { x: 0, y: 0, w: 10, h: 10 } },
      { classId: 1, score: 0.4, box: { x: 50, y: 50, w: 10, h: 10 } },
    ],
    0.45,
  );
  t.same(
    kept.map((k) => [k.classId, k.score]),
    [
      [1, 0.9],
      [2, 0.5],
      [1, 0.4],
    ],
  );
});

/** Raw [1, 84, N] head with the given anchors (cx, cy, w, h, class, score). */
function rawHead(anchors: Array<[number, number, number, number, number, number]>): Float32Array {
  const n = anchors.length;
  const out = new Float32Array(84 * n);
  anchors.forEach(([cx, cy, w, h, cls, score], i) => {
    out[i] = cx;
    out[n + i] = cy;
    out[2 * n + i] = w;
    out[3 * n + i] = h;
    out[(4 + cls) * n + i] = score;
  });
  return out;
}

const ANCHORS: Array<[number, number, number, number, number, number]> = [
  [100, 160, 40, 20, 41, 0.9], // cup
  [102, 161, 40, 20, 41, 0.6], // the same cup again: suppressed
  [250, 120, 60, 60, 0, 0.8], // person
  [30, 100, 10, 10, 15, 0.1], // below the threshold
];

t.test('decodeYoloRaw: threshold, class-wise NMS, xywh to box', async (t) => {
  const dets = decodeYoloRaw(rawHead(ANCHORS), [1, 84, ANCHORS.length], { scoreThreshold: 0.25 });
  t.equal(dets.length, 2);
  t.match(dets[0], { classId: 41, box: { x: 80, y: 150, w: 40, h: 20 } });
  t.ok(Math.abs(dets[0]!.score - 0.9) < 1e-6);
  t.match(dets[1], { classId: 0, box: { x: 220, y: 90, w: 60, h: 60 } });
  t.throws(() => decodeYoloRaw(new Float32Array(6), [1, 6, 1, 1]), /expected a raw YOLO output/);
});

t.test('decodeYoloEndToEnd: x1y1x2y2 rows above the threshold', async (t) => {
  const rows = new Float32Array([80, 150, 120, 170, 0.9, 41, 220, 90, 280, 150, 0.8, 0, 0, 0, 5, 5, 0.05, 3]);
  const dets = decodeYoloEndToEnd(rows, [1, 3, 6], { scoreThreshold: 0.25 });
  t.equal(dets.length, 2);
  t.match(dets[0], { classId: 41, box: { x: 80, y: 150, w: 40, h: 20 } });
  t.match(dets[1], { classId: 0, box: { x: 220, y: 90, w: 60, h: 60 } });
  t.equal(COCO_CLASSES.length, 80);
  t.equal(COCO_CLASSES[41], 'cup');
});

t.test('YoloDetector on self-built ONNX models: raw and end-to-end outputs', async (t) => {
  const dir = t.testdir();
  const img = solid(640, 320, [200, 180, 160]);

  const rawPath = join(dir, 'raw.onnx');
  writeFileSync(rawPath, constantModel(320, [1, 84, ANCHORS.length], rawHead(ANCHORS)));
  const raw = await YoloDetector.load(rawPath);
  t.teardown(() => raw.close());
  t.equal(raw.inputSize, 320, 'input size read from the model metadata');
  const a = await raw.detect(img, { scoreThreshold: 0.25, iouThreshold: 0.45 });
  t.same(
    a.map((d) => ({ label: d.label, classId: d.classId, box: d.box })),
    [
      { label: 'cup', classId: 41, box: { x: 160, y: 140, w: 80, h: 40 } },
      { label: 'person', classId: 0, box: { x: 440, y: 20, w: 120, h: 120 } },
    ],
  );
  t.ok(Math.abs(a[0]!.score - 0.9) < 1e-4);

  const e2ePath = join(dir, 'e2e.onnx');
  const rows = new Float32Array([80, 150, 120, 170, 0.9, 41, 220, 90, 280, 150, 0.8, 0, 300, 0, 330, 100, 0.7, 2]);
  writeFileSync(e2ePath, constantModel(320, [1, 3, 6], rows));
  const e2e = await YoloDetector.load(e2ePath);
  t.teardown(() => e2e.close());
  const b = await e2e.detect(img);
  t.same(
    b.map((d) => ({ label: d.label, box: d.box })),
    [
      { label: 'cup', box: { x: 160, y: 140, w: 80, h: 40 } },
      { label: 'person', box: { x: 440, y: 20, w: 120, h: 120 } },
      // y from -160 to 40 in the image: clipped at the top edge.
      { label: 'car', box: { x: 600, y: 0, w: 40, h: 40 } },
    ],
  );
  await e2e.close();
  await t.rejects(e2e.detect(img), /closed/);
});
