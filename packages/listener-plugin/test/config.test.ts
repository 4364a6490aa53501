// Option names (docs/configuration.md): every duration is in milliseconds and
// named `…Ms`; the old names (seconds, or hours for recoveryWindow) keep
// working for one release, converted, with a deprecation warning logged at
// registration. recoveryWindow is validated as hours (a positive number),
// and so is its variable JOB_STATE_LISTENER_RECOVERY_WINDOW.
import Fastify from 'fastify';
import t from 'tap';
import { jobStateListener, resolveConfig } from '../src/index.js';
import { captureLogs } from './helpers.js';

t.test('the old duration names still work, converted from their unit, each with a deprecation', async (t) => {
  const c = resolveConfig({
    env: {},
    reconnectDelay: 2,
    maxReconnectDelay: 30,
    recoveryInterval: 45,
    recoveryWindow: 48,
  });
  t.match(c, {
    reconnectDelayMs: 2_000,
    maxReconnectDelayMs: 30_000,
    recoveryIntervalMs: 45_000,
    recoveryWindowHours: 48,
  });
  t.same(c.deprecations, [
    'option reconnectDelay (seconds) is deprecated: use reconnectDelayMs (milliseconds)',
    'option maxReconnectDelay (seconds) is deprecated: use maxReconnectDelayMs (milliseconds)',
    'option recoveryInterval (seconds) is deprecated: use recoveryIntervalMs (milliseconds)',
    'option recoveryWindow (hours) is deprecated: use recoveryWindowMs (milliseconds)',
  ]);
  t.equal(resolveConfig({ env: {}, recoveryWindow: 0.5 }).recoveryWindowHours, 0.5, 'half an hour');
  t.equal(resolveConfig({ env: {}, reconnectDelay: 0.25 }).reconnectDelayMs, 250, 'a quarter of a second');

  const both = resolveConfig({ env: {}, recoveryWindow: 48, recoveryWindowMs: 3_600_000, reconnectDelay: 9 });
  t.equal(both.recoveryWindowHours, 1, 'the new name wins over the old one');
  t.equal(both.reconnectDelayMs, 9_000);
  t.equal(both.deprecations.length, 2, 'the old names are still reported');
  t.same(resolveConfig({ env: {}, recoveryWindowMs: 7_200_000 }).deprecations, [], 'the new names: no deprecation');
});

t.test('a deprecated option is logged at warn when the plugin is registered', async (t) => {
  const { logs: lines, stream } = captureLogs();
  const app = Fastify({ logger: { level: 'info', stream } });
  t.teardown(() => app.close());
  // Disabled: no connection is opened, the options are still resolved and checked.
  await app.register(jobStateListener, { env: {}, enabled: false, recoveryWindow: 48, recoveryInterval: 30 });
  await app.ready();
  const warnings = lines.filter((l) => l.level === 40 && l.deprecated === true).map((l) => l.msg);
  t.same(warnings, [
    '@feedlyai/listener-plugin: option recoveryInterval (seconds) is deprecated: use recoveryIntervalMs (milliseconds)',
    '@feedlyai/listener-plugin: option recoveryWindow (hours) is deprecated: use recoveryWindowMs (milliseconds)',
  ]);
});

t.test('recoveryWindow is a positive number of hours; recoveryWindowMs a positive integer of ms', async (t) => {
  for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '12', null]) {
    t.throws(
      () => resolveConfig({ env: {}, recoveryWindow: bad }),
      /invalid options: option recoveryWindow:/,
      `recoveryWindow ${String(bad)} refused, naming the option`,
    );
  }
  for (const bad of [0, -3_600_000, 1.5, '3600000']) {
    t.throws(
      () => resolveConfig({ env: {}, recoveryWindowMs: bad }),
      /invalid options: option recoveryWindowMs:/,
      `recoveryWindowMs ${String(bad)} refused, naming the option`,
    );
  }
  // Hours, not seconds: 36 is a day and a half (validated as seconds, it was 36 s).
  t.equal(resolveConfig({ env: {}, recoveryWindow: 36 }).recoveryWindowHours, 36);
  t.equal(resolveConfig({ env: {}, recoveryWindowMs: 36 * 3_600_000 }).recoveryWindowHours, 36);
});

t.test('JOB_STATE_LISTENER_RECOVERY_WINDOW: hours, a bad value named by the variable', async (t) => {
  t.equal(resolveConfig({ env: { JOB_STATE_LISTENER_RECOVERY_WINDOW: '48' } }).recoveryWindowHours, 48);
  t.equal(resolveConfig({ env: { JOB_STATE_LISTENER_RECOVERY_WINDOW: '0.25' } }).recoveryWindowHours, 0.25);
  t.equal(
    resolveConfig({ env: { JOB_STATE_LISTENER_RECOVERY_WINDOW: '48' }, recoveryWindowMs: 3_600_000 })
      .recoveryWindowHours,
    1,
    'the option overrides the variable',
  );
  for (const bad of ['abc', '0', '-2', 'Infinity', '12h']) {
    t.throws(
      () => resolveConfig({ env: { JOB_STATE_LISTENER_RECOVERY_WINDOW: bad } }),
      new RegExp(`JOB_STATE_LISTENER_RECOVERY_WINDOW must be a positive number, got "${bad}"`),
      `${bad} refused`,
    );
  }
});
