/**
 * The files generated from regions/*.json are committed; this suite fails when one is stale
 * (run `npm run gen:regions`), when the topology is invalid, or when nats-server /
 * docker-compose refuse what the generator renders.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  GENERATED_HEADER,
  TopologyError,
  loadTopology,
  renderDevNatsConfig,
  renderDockerCompose,
  renderGeneratedFiles,
  renderRegionNatsConfig,
  topologyFromNames,
} from '../../regions/topology.ts';
import { ADMIN_USER, generateCredentials, nkeyEnvName, serverEnv, writeCredentials } from '../../regions/auth.ts';
import { NATS_SERVER_BIN } from '../../support/nats-server.ts';
import { regionFile } from '../helpers/region-files.ts';

const root = resolve(import.meta.dirname, '../..');
const tmp = mkdtempSync(join(os.tmpdir(), 'limiter-regions-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const has = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;

describe('committed generated files', () => {
  const topology = loadTopology();

  it('has the three default regions, one node each', () => {
    expect(topology.regions.map((r) => r.name).sort()).toEqual(['ap-south', 'eu-west', 'us-east']);
    for (const r of topology.regions) expect(r.nodes.length).toBeGreaterThanOrEqual(1);
  });

  for (const f of renderGeneratedFiles(topology)) {
    it(`${f.path} matches the generator (else run: npm run gen:regions)`, () => {
      const abs = join(root, f.path);
      expect(existsSync(abs), `${f.path} is missing: run npm run gen:regions`).toBe(true);
      const committed = readFileSync(abs, 'utf8');
      expect(committed, `${f.path} is stale: run npm run gen:regions`).toBe(f.content);
      expect(committed.split('\n')[0]).toBe(`# ${GENERATED_HEADER}`);
    });
  }

  it('regions/nats holds no config of a region that no longer exists', () => {
    const wanted = new Set(topology.regions.map((r) => `${r.name}.conf`));
    const extra = readdirSync(join(root, 'regions/nats')).filter((f) => f.endsWith('.conf') && !wanted.has(f));
    expect(extra, 'stale region configs: run npm run gen:regions').toEqual([]);
  });

  it('every region file has a generated nats config that nats-server accepts, given the users\' public keys', () => {
    const env = { ...process.env, ...serverEnv(generateCredentials([...topology.regions.flatMap((r) => r.nodes.map((n) => n.id)), 'local-1'])) };
    for (const r of topology.regions) {
      const conf = renderRegionNatsConfig(topology, r.name, { storeDir: join(tmp, `store-${r.name}`) });
      const file = join(tmp, `${r.name}.conf`);
      writeFileSync(file, conf);
      const out = spawnSync(NATS_SERVER_BIN, ['-t', '-c', file], { encoding: 'utf8', env });
      expect(out.status, out.stderr + out.stdout).toBe(0);
      // Without them the server refuses to start: no configuration runs open by accident.
      const bare = spawnSync(NATS_SERVER_BIN, ['-t', '-c', file], { encoding: 'utf8', env: { PATH: process.env.PATH } });
      expect(bare.status).not.toBe(0);
      expect(bare.stderr + bare.stdout).toContain(nkeyEnvName(ADMIN_USER));
      // The admin and each of the region's nodes is a user; nodes have permissions, the admin all.
      expect(conf).toContain(`{ nkey: $${nkeyEnvName(ADMIN_USER)} }`);
      for (const n of r.nodes) expect(conf).toContain(`nkey: $${nkeyEnvName(n.id)}\n      permissions: {`);
      // One cluster per region, a route to its own cluster port (required on 2.9), gateways to every other region.
      expect(conf).toContain(`name: "${r.name}"`);
      expect(conf).toContain(`routes: ["nats-route://127.0.0.1:${r.nats.clusterPort}"]`);
      for (const o of topology.regions.filter((x) => x.name !== r.name)) {
        expect(conf).toContain(`{ name: "${o.name}", urls: ["nats://nats-${o.name}:${o.nats.gatewayPort}"] }`);
      }
    }
    const dev = join(tmp, 'dev.conf');
    writeFileSync(dev, renderDevNatsConfig({ storeDir: join(tmp, 'dev-store') }));
    const out = spawnSync(NATS_SERVER_BIN, ['-t', '-c', dev], { encoding: 'utf8', env });
    expect(out.status, out.stderr + out.stdout).toBe(0);
    expect(readFileSync(join(root, 'nats.conf'), 'utf8')).toContain('listen: "127.0.0.1:4222"');
  });

  it('docker-compose.yml has a nats:2.9 server per region and a limiter service per node', () => {
    const doc = parse(readFileSync(join(root, 'docker-compose.yml'), 'utf8')) as {
      services: Record<string, { image?: string; build?: unknown; environment?: Record<string, string>; volumes?: string[]; ports?: string[] }>;
    };
    for (const r of topology.regions) {
      const nats = doc.services[`nats-${r.name}`];
      expect(nats?.image).toBe('nats:2.9');
      expect(nats?.volumes).toContain(`./regions/nats/${r.name}.conf:/etc/nats/nats.conf:ro`);
      for (const n of r.nodes) {
        const svc = doc.services[n.id];
        expect(svc?.build).toEqual({ context: '.', dockerfile: 'Dockerfile' });
        expect(svc?.environment).toMatchObject({
          LIMITER_NODE_ID: n.id,
          LIMITER_REGION: r.name,
          LIMITER_REGIONS: 'ap-south,eu-west,us-east',
          LIMITER_NATS: `nats://nats-${r.name}:${r.nats.clientPort}`,
          LIMITER_DATA: '/data',
          LIMITER_PORT: String(n.httpPort),
        });
        expect(svc?.environment?.LIMITER_RULES).toBeTruthy();
        expect(svc?.ports).toEqual([`${n.httpPort}:${n.httpPort}`]);
        expect(svc?.environment?.LIMITER_NATS_NKEY_FILE).toBe(`/run/secrets/nkey-${n.id}`);
        expect((svc as { secrets?: string[] }).secrets).toEqual([`nkey-${n.id}`]);
      }
      expect((nats as { env_file?: string[] }).env_file).toEqual(['./secrets/nats.env']);
    }
    // The streams are provisioned by the admin user, the only one holding its seed.
    const provision = doc.services.provision as { command?: string[]; environment?: Record<string, string>; secrets?: string[] };
    expect(provision.command).toEqual(['node', 'dist/src/provision.js']);
    expect(provision.secrets).toEqual(['nkey-admin']);
    expect(provision.environment?.LIMITER_REGIONS).toBe('ap-south,eu-west,us-east');
  });

  const composeBin = has('docker-compose');
  // .ci/run installs Debian's docker-compose: a missing binary is a failure, not a skip.
  it('docker-compose -f docker-compose.yml config -q accepts the compose file, once `npm run creds` has written secrets/', () => {
    expect(composeBin, 'docker-compose is not installed').toBe(true);
    // A copy beside generated secrets: the repository itself never holds them.
    const d = mkdtempSync(join(tmp, 'compose-'));
    cpSync(join(root, 'docker-compose.yml'), join(d, 'docker-compose.yml'));
    cpSync(join(root, 'regions/nats'), join(d, 'regions/nats'), { recursive: true });
    cpSync(join(root, 'Dockerfile'), join(d, 'Dockerfile'));
    writeCredentials(join(d, 'secrets'), generateCredentials(topology.regions.flatMap((r) => r.nodes.map((n) => n.id))));
    execFileSync('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], { cwd: d, stdio: 'pipe' });
  });

  it('Dockerfile builds from node:20-bookworm-slim with the better-sqlite3 toolchain, compiles and runs dist/src/main.js', () => {
    const df = readFileSync(join(root, 'Dockerfile'), 'utf8');
    expect(df).toMatch(/^FROM node:20-bookworm-slim/m);
    expect(df).toMatch(/python3 make g\+\+/);
    expect(df).toMatch(/RUN npm ci/);
    expect(df).toMatch(/RUN npm run build && npm prune --omit=dev/);
    expect(df).toContain('CMD ["node", "dist/src/main.js"]');
    const ignore = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n');
    expect(ignore).toContain('node_modules');
    expect(ignore).toContain('.git');
  });
});

describe('topology validation', () => {
  const region = regionFile;
  const dirWith = (files: Record<string, unknown>) => {
    const d = mkdtempSync(join(tmp, 'topo-'));
    for (const [f, v] of Object.entries(files)) writeFileSync(join(d, f), typeof v === 'string' ? v : JSON.stringify(v));
    return d;
  };
  const problems = (dir: string) => {
    try {
      loadTopology(dir);
    } catch (err) {
      expect(err).toBeInstanceOf(TopologyError);
      expect((err as TopologyError).code).toBe('TOPOLOGY_INVALID');
      return (err as TopologyError).problems.map((p) => `${p.file?.split('/').pop()} ${p.path}: ${p.message}`);
    }
    throw new Error('expected a TopologyError');
  };

  it('accepts a valid topology and sorts regions by name', () => {
    const t = loadTopology(dirWith({ 'b.json': region('b', 5000), 'a.json': region('a', 5100) }));
    expect(t.regions.map((r) => r.name)).toEqual(['a', 'b']);
  });

  it('names the file and field of every problem', () => {
    const bad = region('eu-west', 5000);
    (bad.nats as Record<string, unknown>).gatewayPort = 'x';
    const p = problems(
      dirWith({
        'eu-west.json': bad,
        'us-east.json': { ...region('us-east', 5100), colour: 'red' },
        'ap-south.json': region('ap-north', 5200),
        'broken.json': '{ not json',
      }),
    );
    expect(p).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^eu-west\.json \/nats\/gatewayPort: must be an integer, got "x"/),
        expect.stringMatching(/^us-east\.json \/colour: unknown field "colour"/),
        expect.stringMatching(/^ap-south\.json \/name: must equal the file name "ap-south"/),
        expect.stringMatching(/^broken\.json : cannot read or parse JSON/),
      ]),
    );
  });

  it('refuses duplicate ports, duplicate node ids and bad names', () => {
    const a = region('a', 5000);
    const b = region('b', 5000);
    b.nodes = [{ id: 'a-1', httpPort: 6000 }, { id: 'bad.id', httpPort: 6001 }];
    const p = problems(dirWith({ 'a.json': a, 'b.json': b, 'Bad_Name.json': region('Bad_Name', 7000) }));
    expect(p).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^Bad_Name\.json \/name: must be lower-case/),
        expect.stringMatching(/^b\.json \/nodes\/1\/id: must be letters, digits/),
      ]),
    );
    const p2 = problems(dirWith({ 'a.json': a, 'b.json': { ...region('b', 5000), nodes: [{ id: 'a-1', httpPort: 6000 }] } }));
    expect(p2).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^b\.json \/nats\/clientPort: port 5000 is already used by a\.json \/nats\/clientPort/),
        expect.stringMatching(/^b\.json \/nodes\/0\/id: node id "a-1" is also used in/),
      ]),
    );
    expect(problems(dirWith({}))).toEqual([expect.stringMatching(/no region files/)]);
  });

  it('the message names file and field', () => {
    const d = dirWith({ 'x.json': { ...region('x', 5000), nodes: [] } });
    expect(() => loadTopology(d)).toThrow(/OUT_OF_RANGE .*x\.json at \/nodes: must have at least 1 item/);
  });
});

describe('renderer overrides (tests and the local launcher run every region on one machine)', () => {
  const topology = topologyFromNames(['us-east', 'eu-west']);

  it('applies ports, hosts, store dir, ping interval and a proxied gateway URL', () => {
    const conf = renderRegionNatsConfig(topology, 'us-east', {
      storeDir: '/tmp/x/js',
      listenHost: '127.0.0.1',
      pingInterval: '2s',
      addresses: {
        'us-east': { ports: { clientPort: 41001, clusterPort: 41002, gatewayPort: 41003, monitorPort: 41004 }, gatewayUrl: 'nats://127.0.0.1:42003' },
        'eu-west': { host: '127.0.0.1', ports: { gatewayPort: 43003 } },
      },
      header: false,
    });
    expect(conf).not.toContain(GENERATED_HEADER);
    expect(conf).toContain('listen: "127.0.0.1:41001"');
    expect(conf).toContain('http: "127.0.0.1:41004"');
    expect(conf).toContain('store_dir: "/tmp/x/js"');
    expect(conf).toContain('ping_interval: "2s"');
    expect(conf).toContain('routes: ["nats-route://127.0.0.1:41002"]');
    expect(conf).toContain('listen: "127.0.0.1:41003"');
    expect(conf).toContain('advertise: "127.0.0.1:42003"');
    expect(conf).toContain('{ name: "eu-west", urls: ["nats://127.0.0.1:43003"] }');
  });

  it('renders compose for any topology, ports quoted', () => {
    const yml = renderDockerCompose(topology);
    expect(yml.split('\n')[0]).toBe(`# ${GENERATED_HEADER}`);
    expect(yml).toMatch(/- "14000:14000"/);
    expect(Object.keys((parse(yml) as { services: object }).services)).toEqual(
      expect.arrayContaining(['nats-us-east', 'us-east-1', 'nats-eu-west', 'eu-west-1']),
    );
  });
});
