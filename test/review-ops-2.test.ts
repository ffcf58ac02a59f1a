/**
 * Review of the operational surface (CLI, README commands, deploy numbers), second pass.
 * The CLI runs as a real process (`node --import tsx src/main.ts`, one process: signals reach the gateway).
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';

const README = readFileSync('README.md', 'utf8');
const CLI = ['--import', 'tsx', 'src/main.ts'];

function cli(args: string[], env: Record<string, string | undefined> = {}) {
  return spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, OPENAI_API_KEY: '', ...env } });
}

const MINIMAL = `upstreams:\n  - {name: sim, simulate: {latency_ms: 1, chunks: 1}}\nrouting: {default: [sim]}\nserver: {host: 127.0.0.1}\n`;

describe('promptgate --config with an empty value', () => {
  it.each([[['check', '--config', '']], [['--config=']], [['serve', '-c', '']]])(
    '%j is a usage error, exit 2 (was: exit 1, "": cannot read the config file, "1 error in " naming no file)',
    (args) => {
      const run = cli(args);
      expect(run.signal).toBeNull(); // it did not start serving
      expect(run.status).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(/^option --config needs a file name \(the value is empty\)\nusage:\n {2}promptgate \[serve\]/);
    },
  );
});

describe('README commands', () => {
  it('the Kubernetes section checks the config it tells you to edit, and it passes (was: `--config gateway.config.yaml`, the top-level file)', () => {
    const section = README.slice(README.indexOf('**Config and template updates without restarts.**'), README.indexOf('**Security.**'));
    const edited = /Edit `base\/promptgate\/gateway\.config\.yaml`/.exec(section);
    expect(edited).not.toBeNull();
    const command = /`npm run check -- --config ([^`]+)`/.exec(section);
    expect(command?.[1]).toBe('deploy/kubernetes/base/promptgate/gateway.config.yaml');
    const run = cli(['check', '--config', command![1]]);
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe(`${command![1]}: OK (1 upstream, routes to openai)\n`);
    expect(run.status).toBe(0);
  });

  it('"Resource sizing" names the sidecar resources of base/ and of the example overlay', () => {
    const sidecar = (doc: { spec: { template: { spec: { initContainers: { name: string; resources: { requests: Record<string, string>; limits: Record<string, string> } }[] } } } }) =>
      doc.spec.template.spec.initContainers.find((c) => c.name === 'promptgate')!.resources;
    const base = sidecar(YAML.parse(readFileSync('deploy/kubernetes/base/deployment.yaml', 'utf8')));
    const overlay = sidecar(YAML.parse(readFileSync('deploy/kubernetes/overlays/example/deployment-patch.yaml', 'utf8')));
    const sizing = README.slice(README.indexOf('### Resource sizing'), README.indexOf('\n### Checks\n'));
    const first = sizing.split('\n\n')[1].replace(/\s+/g, ' ');
    expect(first).toContain(`requests \`${base.requests.cpu}\` CPU and \`${base.requests.memory}\` memory for the sidecar and limits memory to \`${base.limits.memory}\` (in \`base/\`;`);
    expect(first).toContain(`the \`overlays/example\` patch requests \`${overlay.requests.cpu}\` CPU)`);
    expect(overlay.requests.memory).toBe(base.requests.memory);
    expect(overlay.limits).toEqual(base.limits);
    expect(overlay.limits.cpu).toBeUndefined(); // "no CPU limit"
  });
});

describe('hot reload and a log file next to the config', () => {
  // Was: the watcher reloaded on ANY event in the config file's directory, so `npm start >
  // gateway.log` in the checkout reloaded forever from the first request on (its log line
  // changed gateway.log, which reloaded the config, which logged "config reloaded", ...).
  it('a gateway whose stdout goes to a file in the config directory does not reload in a loop', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-ops2-log-'));
    const file = path.join(dir, 'gateway.config.yaml');
    writeFileSync(file, MINIMAL);
    const logFile = path.join(dir, 'gateway.log');
    const fd = openSync(logFile, 'w');
    const child = spawn(process.execPath, [...CLI, '--config', file, '--port', '0'], { stdio: ['ignore', fd, 'pipe'], env: { ...process.env, OPENAI_API_KEY: '' } });
    closeSync(fd);
    try {
      const deadline = Date.now() + 15_000;
      while (!readFileSync(logFile, 'utf8').includes('"msg":"listening"')) {
        if (Date.now() > deadline) throw new Error('the gateway did not start');
        await new Promise((r) => setTimeout(r, 50));
      }
      // One request: its log line is the first write to gateway.log after the watch started.
      const port = Number(/"msg":"listening".*?"port":(\d+)/.exec(readFileSync(logFile, 'utf8'))![1]);
      const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(res.status).toBe(200);
      await res.text();
      await new Promise((r) => setTimeout(r, 1500)); // several debounce periods
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    const reloads = readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"msg":"config reloaded"'));
    expect(reloads).toHaveLength(0);
  });
});
