/**
 * yolo_detect with YOLO_MODEL_PATH set: a tiny ONNX model the test builds
 * itself (an end-to-end [1,N,6] export whose output is a known constant) runs
 * in onnxruntime-node through the stage route; the rows say `yolo`, the boxes
 * are mapped back to the photo, and the planner keeps the text off them.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import protobuf from 'protobufjs';
import t from 'tap';
import { seedJob, tempStorage, testApp, testDb, variantState } from './helpers.js';

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

/** Input `images` [1,3,size,size]; output `output0` = the given constant (Identity of an initializer). */
function constantModel(size: number, dims: number[], values: Float32Array): Uint8Array {
  const Model = protobuf.parse(ONNX_PROTO, { keepCase: true }).root.lookupType('onnx.ModelProto');
  const valueInfo = (name: string, shape: number[]) => ({
    name,
    type: { tensor_type: { elem_type: 1, shape: { dim: shape.map((d) => ({ dim_value: d })) } } },
  });
  return Model.encode(
    Model.create({
      ir_version: 8,
      producer_name: 'feedly-stage-test',
      opset_import: [{ domain: '', version: 13 }],
      graph: {
        name: 'constant_yolo_e2e',
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
    }),
  ).finish();
}

t.test('yolo_detect runs the ONNX model; the planner avoids its boxes', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  // coffee.png is 600x400: letterboxed into 640 at scale 640/600, padded 106.67 px top and bottom.
  // One cup (class 41) at 640-space x1y1x2y2 (192, 128, 448, 384), one low-score row dropped.
  const rows = new Float32Array([192, 128, 448, 384, 0.91, 41, 10, 10, 20, 20, 0.05, 0]);
  const modelPath = path.join(storage, 'tiny-yolo-e2e.onnx');
  await writeFile(modelPath, constantModel(640, [1, 2, 6], rows));
  const app = await testApp(t, db, storage, { yoloModelPath: modelPath });
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 1,
    variantStep: 'vlm_analyze',
    variantStatus: 'done',
    adCopyEng: 'Brewed for You',
  });
  const id = job.variantIds[0] as string;
  const payload = { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: id };
  const r = await app.inject({ method: 'POST', url: '/api/yh/yolo/detect', payload });
  t.equal(r.statusCode, 200, r.body.slice(0, 300));
  t.match(r.json(), { method: 'yolo', width: 600, height: 400 });
  const row = await db.pool.query('SELECT method, model, detections FROM stage_detections WHERE job_variants_id = $1', [
    id,
  ]);
  t.equal(row.rows[0].method, 'yolo');
  t.equal(row.rows[0].model, modelPath);
  const dets = row.rows[0].detections as Array<{
    label: string;
    classId: number;
    box: { x: number; y: number; w: number; h: number };
  }>;
  t.equal(dets.length, 1, 'the low-score row is dropped');
  t.match(dets[0], { label: 'cup', classId: 41 });
  const b = dets[0]?.box as { x: number; y: number; w: number; h: number };
  // Back in image pixels: x = 192 / 1.0667 = 180, y = (128 - 106.67) / 1.0667 = 20, w = h = 240.
  t.ok(
    Math.abs(b.x - 180) <= 1 && Math.abs(b.y - 20) <= 1 && Math.abs(b.w - 240) <= 1 && Math.abs(b.h - 240) <= 1,
    JSON.stringify(b),
  );

  const p = await app.inject({ method: 'POST', url: '/api/yh/planner/propose', payload });
  t.equal(p.statusCode, 200, p.body.slice(0, 300));
  const chosen = await db.pool.query<{ lines: Array<{ box: { x: number; y: number; w: number; h: number } }> }>(
    'SELECT lines FROM stage_planner_proposals WHERE job_variants_id = $1 AND chosen',
    [id],
  );
  for (const l of chosen.rows[0]?.lines ?? []) {
    const ix = Math.max(0, Math.min(l.box.x + l.box.w, b.x + b.w) - Math.max(l.box.x, b.x));
    const iy = Math.max(0, Math.min(l.box.y + l.box.h, b.y + b.h) - Math.max(l.box.y, b.y));
    t.equal(ix * iy, 0, 'the chosen text line does not overlap the detected cup');
  }
  t.match(await variantState(db.pool, id), { current_step: 'planner', status: 'done' });
});
