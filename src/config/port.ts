/**
 * Listen ports from the command line (`--port`) and the environment (`PORT`), read strictly:
 * decimal digits, 0 to 65535. `Number()` would take `" "` for 0 and `"0x50"` for 80.
 */

/** The port `value` names, or undefined when it is not a port number. */
export function parsePort(value: string): number | undefined {
  if (!/^\d{1,5}$/.test(value)) return undefined;
  const port = Number(value);
  return port <= 65535 ? port : undefined;
}

/**
 * `PORT` from the environment: undefined when unset or empty (the config's `server.port`
 * applies); an error naming PORT when it is set to anything but a port number, so a typo
 * fails at startup instead of listening somewhere else.
 */
export function portFromEnv(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const port = parsePort(value);
  if (port === undefined) throw new Error(`PORT ${JSON.stringify(value.slice(0, 40))} is not a port number (expected an integer from 0 to 65535)`);
  return port;
}
