/**
 * `npm test`'s pretest step: the programs the tests run for real must be installed. On Debian as
 * root, what is missing is installed through apt-get; elsewhere the step stops at once naming
 * the exact command to run.
 */
import { ensureDebianPackage } from '../support/debian.ts';

const NEEDED: [bin: string, pkg: string][] = [
  [process.env.NATS_SERVER_BIN ?? 'nats-server', 'nats-server'],
  ['docker-compose', 'docker-compose'],
  ['openssl', 'openssl'],
  ['nginx', 'nginx-light'],
  ['python3', 'python3'],
];

let failed = false;
for (const [bin, pkg] of NEEDED) {
  try {
    ensureDebianPackage(bin, pkg, (m) => process.stderr.write(`pretest: ${m}\n`));
  } catch (err) {
    process.stderr.write(`pretest: ${(err as Error).message}\n`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
