/**
 * The image code's tests in one process: decoding, bounds, the planner, the
 * evaluations, text, YOLO and the four sample photos. As separate test files
 * each would be its own tap process, at about 3 s of CPU before its first
 * test (docs/testing.md, "What a test run costs"); none of them holds a
 * database or changes the environment, so they share one. One part alone:
 * `npx tap test/vision/decode.unit.ts`.
 */
import './decode.unit.js';
import './bounds.unit.js';
import './planner.unit.js';
import './evaluate.unit.js';
import './text.unit.js';
import './yolo.unit.js';
import './samples.unit.js';
