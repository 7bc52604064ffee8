/**
 * Certificates for tests that speak TLS: a throw-away CA, a server certificate it signs for
 * 127.0.0.1 / localhost and a client certificate, made with the `openssl` CLI (installed by .ci/run when missing) in a
 * temporary directory that `remove()` deletes.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCertificates {
  dir: string;
  /** PEM files. */
  caCert: string;
  cert: string;
  key: string;
  /** A client certificate the same CA signs (for servers that verify clients). */
  clientCert: string;
  clientKey: string;
  /** The CA certificate's PEM text (for a client's `ca`). */
  caPem: string;
  remove(): void;
}

export function makeTestCertificates(names: { dns?: string[]; ip?: string[] } = {}): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), 'limiter-tls-'));
  const f = (n: string) => join(dir, n);
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const dns = names.dns ?? ['localhost'];
  const ip = names.ip ?? ['127.0.0.1'];
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=limiter test CA', '-keyout', f('ca.key'), '-out', f('ca.crt')]);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=limiter test server', '-keyout', f('server.key'), '-out', f('server.csr')]);
  const san = [...dns.map((d) => `DNS:${d}`), ...ip.map((i) => `IP:${i}`)].join(',');
  writeFileSync(f('ext.cnf'), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
  run(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f('ext.cnf'), '-out', f('server.crt')]);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=limiter test client', '-keyout', f('client.key'), '-out', f('client.csr')]);
  writeFileSync(f('client.cnf'), 'extendedKeyUsage=clientAuth\n');
  run(['x509', '-req', '-in', f('client.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f('client.cnf'), '-out', f('client.crt')]);
  return {
    dir,
    caCert: f('ca.crt'),
    cert: f('server.crt'),
    key: f('server.key'),
    clientCert: f('client.crt'),
    clientKey: f('client.key'),
    caPem: readFileSync(f('ca.crt'), 'utf8'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
