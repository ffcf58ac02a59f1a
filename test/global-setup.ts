/**
 * Vitest global setup: the run gets a temp directory of its own, handed to the test
 * workers (and what they spawn) as TMPDIR before they start, and removed when the run
 * ends. Tests create their config dirs, knowledge bases and sockets with mkdtemp under
 * os.tmpdir(); this way none of them is left behind in /tmp.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(path.join(tmpdir(), 'promptgate-vitest-'));
  chmodSync(dir, 0o755); // like /tmp, traversable: the image test runs the gateway as another user
  process.env.TMPDIR = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
