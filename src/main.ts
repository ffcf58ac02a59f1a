#!/usr/bin/env node
/**
 * promptgate CLI.
 *
 *   promptgate [serve] [--config FILE] [--port N]   run the gateway (default)
 *   promptgate check [--config FILE]                 validate a config, print every error
 *                                                    (`--port` there is a usage error)
 *
 * The config file is `--config`, else `$PROMPTGATE_CONFIG` (when not empty), else
 * `./gateway.config.yaml`. Exit codes: 0 ok, 1 invalid config or startup failure, 2 usage
 * error (unknown command or option, stray argument), so a typo never reads as "config bad"
 * or, worse, as "config OK" for a file that was not the one given.
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile } from './config/load.js';
import { parsePort } from './config/port.js';
import { startGateway } from './server.js';

const USAGE = `usage:
  promptgate [serve] [--config FILE] [--port N]
  promptgate check [--config FILE]
  promptgate --help`;

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        port: { type: 'string', short: 'p' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    return usageError(parseArgsMessage(err as Error & { code?: string }));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const command = positionals[0] ?? 'serve';
  if (positionals.length > 1) return usageError(`unexpected argument "${positionals[1]}" (the config file goes after --config)`);
  // `--config "$UNSET"`: a usage error, not a read of "" that prints a file name of nothing.
  if (values.config === '') return usageError('option --config needs a file name (the value is empty)');
  const file = values.config ?? (process.env.PROMPTGATE_CONFIG || 'gateway.config.yaml');

  switch (command) {
    case 'check':
      // `check -p my.yaml` (p for c) would otherwise check ./gateway.config.yaml and say OK.
      if (values.port !== undefined) return usageError('option --port does not apply to check (the config file goes after --config)');
      return check(file);
    case 'serve': {
      const port = values.port !== undefined ? parsePort(values.port) : undefined;
      if (values.port !== undefined && port === undefined) return usageError(`invalid --port ${JSON.stringify(values.port)} (expected an integer from 0 to 65535)`);
      await startGateway({ file, port });
      return -1; // keep running; the server exits on its own signals
    }
    default:
      return usageError(`unknown command "${command}"`);
  }
}

/**
 * node:util parseArgs throws ERR_PARSE_ARGS_* for unknown options and missing values. Its
 * unknown-option message goes on to advise passing the word as a positional after `--`,
 * which this CLI rejects: cut to its first clause. The others, such as `--port -1`'s that
 * runs over three lines, are made one line, like every other error.
 */
function parseArgsMessage(err: Error & { code?: string }): string {
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const option = /'([^']+)'/.exec(err.message)?.[1];
    if (option !== undefined) return `unknown option '${option}'`;
  }
  return err.message.split('\n').map((line) => line.trim()).join(' ');
}

/** Prints `message` and the usage; exit code 2. */
function usageError(message: string): number {
  process.stderr.write(`${message}\n${USAGE}\n`);
  return 2;
}

function check(file: string): number {
  try {
    const config = loadConfigFile(file);
    const upstreams = `${config.upstreams.size} upstream${config.upstreams.size === 1 ? '' : 's'}`;
    process.stdout.write(`${file}: OK (${upstreams}, routes to ${config.routing.default.join(' -> ')})\n`);
    for (const note of config.notes) process.stdout.write(`note: ${note}\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const issue of err.issues) process.stderr.write(`${issue.path}: ${issue.message}\n`);
    process.stderr.write(`${err.issues.length} error${err.issues.length === 1 ? '' : 's'} in ${file}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      for (const issue of err.issues) process.stderr.write(`${issue.path}: ${issue.message}\n`);
    } else {
      process.stderr.write(`promptgate: ${(err as Error)?.message ?? String(err)}\n`);
    }
    process.exit(1);
  },
);
