export * from './child-env.js';
export * from './embedded.js';
export * from './harness.js';
export * from './seed.js';
export * from './wait.js';
export * from './suite.js';
