#!/usr/bin/env node
/**
 * promptgate CLI.
 *
 *   promptgate [serve] [--config FILE] [--port N]   run the gateway (default)
 *   promptgate check [--config FILE]                 validate a config, print every error
 *
 * The config file is `--config`, else `$PROMPTGATE_CONFIG`, else `./gateway.config.yaml`.
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile } from './config/load.js';
import { parsePort } from './config/port.js';
import { startGateway } from './server.js';

const USAGE = `usage:
  promptgate [serve] [--config FILE] [--port N]
  promptgate check [--config FILE]`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      port: { type: 'string', short: 'p' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const command = positionals[0] ?? 'serve';
  const file = values.config ?? process.env.PROMPTGATE_CONFIG ?? 'gateway.config.yaml';

  switch (command) {
    case 'check':
      return check(file);
    case 'serve': {
      const port = values.port !== undefined ? parsePort(values.port) : undefined;
      if (values.port !== undefined && port === undefined) {
        process.stderr.write(`invalid --port ${values.port}\n${USAGE}\n`);
        return 2;
      }
      await startGateway({ file, port });
      return -1; // keep running; the server exits on its own signals
    }
    default:
      process.stderr.write(`unknown command "${command}"\n${USAGE}\n`);
      return 2;
  }
}

function check(file: string): number {
  try {
    const config = loadConfigFile(file);
    process.stdout.write(`${file}: OK (${config.upstreams.size} upstreams, routes to ${config.routing.default.join(' -> ')})\n`);
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
