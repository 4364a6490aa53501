/**
 * The engine's unit tests in one process: the breaker and capacity, decide,
 * the dispatch units and the env file parser. As separate test files each
 * would be its own tap process, at about 3 s of CPU before its first test
 * (docs/testing.md, "What a test run costs"); none of them holds a database
 * or changes the environment, so they share one. One part alone:
 * `npx tap test/decide.unit.ts`.
 */
import './breaker-capacity.unit.js';
import './decide.unit.js';
import './dispatch-units.unit.js';
import './env-file.unit.js';
