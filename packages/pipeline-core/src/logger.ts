/** The logging surface the engine needs: pino's (obj, msg) methods. */
export interface EngineLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

const noop = () => {};
export const silentLogger: EngineLogger = { info: noop, warn: noop, error: noop, debug: noop };
