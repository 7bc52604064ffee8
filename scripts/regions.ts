/**
 * `npm run regions`: runs every region of the topology in regions/*.json on this machine.
 *
 * Per region one nats-server (the generated config layout from regions/topology.ts, bound to
 * 127.0.0.1, with a fresh JetStream store dir) and every limiter node of the region as a
 * process `node --import tsx src/main.ts --node-id ID --region R --regions all,regions
 * --nats nats://127.0.0.1:<clientPort> --rules FILE --data <root>/nodes/<id> --host 127.0.0.1
 * --port <httpPort>`. Ports are the topology's, shifted by --port-offset.
 * Every node connects as its own NATS user (an nkey generated for the run, seed in
 * <root>/secrets, permissions as in the generated configs: docs/SECURITY.md). It waits until
 * JetStream is ready on every server (meta leader elected with every region in the meta group),
 * creates the streams as the admin user, waits until every node has logged its "listening"
 * line, then prints a table of the nodes, a curl hint and the live dashboard's URL.
 *
 * Logs: every child's full output goes to <root>/logs/<name>.log; the terminal shows only node
 * warn/error/fatal lines and nats-server [ERR]/[FTL] lines (everything with --verbose), each
 * prefixed by the process name.
 *
 * Ctrl-C / SIGTERM: stops the nodes (SIGTERM, SIGKILL after 10 s), then the nats-servers, removes
 * the temp root and exits 0. A child that dies on its own, or a failed start-up, stops everything
 * with exit 1 and keeps the temp root so its logs can be read.
 * Children run in their own process groups so a terminal Ctrl-C reaches only the launcher, which
 * then stops them in order (nodes before their NATS servers); SIGHUP is handled the same way. A
 * launcher killed with SIGKILL cannot stop them: then kill the pids it printed.
 *
 * --prometheus: also starts Prometheus (support/prometheus.ts) scraping every node's /metrics
 * every second on 127.0.0.1:9090 (+ the offset), and prints its URL.
 *
 *   npm run regions -- [--rules FILE] [--keep-data DIR] [--port-offset N] [--prometheus] [--verbose]
 *
 * LIMITER_ADMIN_TOKEN in the environment is passed to every node (the rules admin API).
 */
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadTopology, natsServerName, type NatsPorts, type Topology, TopologyError } from '../regions/topology.ts';
import { ADMIN_USER, generateCredentials, seedFile, writeCredentials } from '../regions/auth.ts';
import { DEFAULT_MAX_AGE_MS, provisionDeployment } from '../src/replication/jetstream/index.ts';
import { natsServerProblem } from '../support/nats-server.ts';
import { spawnNodeProcess } from '../support/node-process.ts';
import { portFree } from '../support/ports.ts';
import { startPrometheus, prometheusProblem, type PrometheusServer } from '../support/prometheus.ts';
import { startSupercluster } from '../support/supercluster.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const NATS_READY_TIMEOUT_MS = 30_000;
const NODE_LISTEN_TIMEOUT_MS = 120_000;
const STOP_GRACE_MS = 10_000;

const USAGE = `usage: npm run regions -- [options]

Runs every region in regions/*.json locally: one nats-server per region and every limiter node.

options:
  --rules FILE        rules file for every node (default: examples/rules.yaml)
  --keep-data DIR     keep NATS stores, node data and logs in DIR (reused on the next run)
                      instead of a temp dir removed on exit
  --port-offset N     add N to every port of the topology (run beside another copy)
  --prometheus        also run Prometheus scraping every node (port 9090 + offset)
  --verbose, -v       show every log line of every process (default: warn/error only)
  --help, -h          show this help`;

// ---------------------------------------------------------------------------------------------
// Command line

interface Options {
  rules: string;
  keepData: string | undefined;
  portOffset: number;
  prometheus: boolean;
  verbose: boolean;
}

function fail(message: string, code = 1): never {
  process.stderr.write(`regions: ${message}\n`);
  process.exit(code);
}

function parseOptions(argv: string[]): Options {
  let values: { rules?: string; 'keep-data'?: string; 'port-offset'?: string; prometheus?: boolean; verbose?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        rules: { type: 'string' },
        'keep-data': { type: 'string' },
        'port-offset': { type: 'string' },
        prometheus: { type: 'boolean' },
        verbose: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail(`${(err as Error).message}\n\n${USAGE}`, 2);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const offsetText = values['port-offset'] ?? '0';
  if (!/^-?\d+$/.test(offsetText.trim())) fail(`--port-offset: "${offsetText}" is not an integer`, 2);
  const rules = values.rules !== undefined ? resolve(values.rules) : join(ROOT, 'examples', 'rules.yaml');
  if (!existsSync(rules)) fail(`rules file not found: ${rules}`, 2);
  return {
    rules,
    keepData: values['keep-data'] !== undefined ? resolve(values['keep-data']) : undefined,
    portOffset: Number(offsetText),
    prometheus: values.prometheus === true,
    verbose: values.verbose === true,
  };
}

// ---------------------------------------------------------------------------------------------
// Plan: ports after the offset, with what each is for

interface PlannedRegion {
  name: string;
  nats: NatsPorts;
  natsUrl: string;
  monitorUrl: string;
  nodes: Array<{ id: string; httpPort: number }>;
}

function plan(topology: Topology, offset: number): PlannedRegion[] {
  const shift = (p: number, what: string) => {
    const q = p + offset;
    if (q < 1 || q > 65535) fail(`--port-offset ${offset} moves ${what} (${p}) to ${q}, outside 1..65535`, 2);
    return q;
  };
  return topology.regions.map((r) => {
    const nats: NatsPorts = {
      clientPort: shift(r.nats.clientPort, `${r.name} nats.clientPort`),
      clusterPort: shift(r.nats.clusterPort, `${r.name} nats.clusterPort`),
      gatewayPort: shift(r.nats.gatewayPort, `${r.name} nats.gatewayPort`),
      monitorPort: shift(r.nats.monitorPort, `${r.name} nats.monitorPort`),
    };
    return {
      name: r.name,
      nats,
      natsUrl: `nats://${HOST}:${nats.clientPort}`,
      monitorUrl: `http://${HOST}:${nats.monitorPort}`,
      nodes: r.nodes.map((n) => ({ id: n.id, httpPort: shift(n.httpPort, `${n.id} httpPort`) })),
    };
  });
}

function portsOf(regions: PlannedRegion[]): Array<{ port: number; what: string }> {
  const out: Array<{ port: number; what: string }> = [];
  for (const r of regions) {
    for (const [k, v] of Object.entries(r.nats)) out.push({ port: v, what: `${r.name} NATS ${k}` });
    for (const n of r.nodes) out.push({ port: n.httpPort, what: `node ${n.id} HTTP` });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Child processes (started by support/: nats-servers by support/supercluster.ts, nodes by
// support/node-process.ts; watched, logged and stopped here)

type Kind = 'nats' | 'node';

interface Child {
  kind: Kind;
  name: string;
  proc: ChildProcess;
  exited: Promise<void>;
  /** Last lines of output, for failure reports. */
  tail: string[];
  running: boolean;
  /** Takes every output line (stdout and stderr). */
  line(line: string): void;
}

const children: Child[] = [];
let stopping = false;
let natsStopping = false;
let verbose = false;

/** Thrown by startup waits once shutdown has begun. */
class Stopped extends Error {}
/** Aborted (with a Stopped) when shutdown begins: ends the startup waits. */
const startup = new AbortController();

const C = process.stdout.isTTY && !process.env.NO_COLOR ? { dim: '\x1b[2m', red: '\x1b[31m', yellow: '\x1b[33m', reset: '\x1b[0m' } : { dim: '', red: '', yellow: '', reset: '' };

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

const PINO_LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const PINO_SKIP = new Set(['level', 'time', 'pid', 'hostname', 'node', 'region', 'msg']);

/** A node's pino line for the terminal, or null when it is filtered out. */
function formatNodeLine(line: string): string | null {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line; // not a log record (e.g. a crash trace on stderr): always show
  }
  if (typeof j !== 'object' || j === null || typeof j.level !== 'number') return line;
  if (!verbose && j.level < 40) return null;
  const rest = Object.fromEntries(Object.entries(j).filter(([k]) => !PINO_SKIP.has(k)));
  const level = PINO_LEVELS[j.level] ?? String(j.level);
  const color = j.level >= 50 ? C.red : j.level >= 40 ? C.yellow : '';
  return `${color}${level.padEnd(5)}${C.reset} ${String(j.msg ?? '')}${Object.keys(rest).length ? ` ${C.dim}${JSON.stringify(rest)}${C.reset}` : ''}`;
}

/** A nats-server log line for the terminal, or null when it is filtered out. */
function formatNatsLine(line: string): string | null {
  if (verbose) return line;
  // Stopping servers log broken gateway connections to each other: expected, not shown.
  if (natsStopping) return null;
  return /\[(ERR|FTL)\]/.test(line) ? `${C.red}${line}${C.reset}` : null;
}

/**
 * Watches a started child (in its own process group): its output lines, fed to `line()`, go to
 * `logFile` and, filtered, to the terminal; an exit before shutdown stops everything.
 */
function watchChild(kind: Kind, name: string, proc: ChildProcess, logFile: string): Child {
  const log: WriteStream = createWriteStream(logFile, { flags: 'a' });
  log.on('error', () => {}); // a log file that cannot be written must not stop the launcher
  const width = 12;
  const child: Child = {
    kind,
    name,
    proc,
    tail: [],
    running: true,
    exited: Promise.resolve(),
    line(line: string) {
      if (!log.writableEnded) log.write(`${line}\n`);
      child.tail.push(line);
      if (child.tail.length > 40) child.tail.shift();
      const shown = kind === 'node' ? formatNodeLine(line) : formatNatsLine(line);
      if (shown !== null) say(`${C.dim}[${name.padEnd(width)}]${C.reset} ${shown}`);
    },
  };
  child.exited = new Promise<void>((done) => {
    const finish = (info: string) => {
      if (!child.running) return;
      child.running = false;
      done();
      if (!stopping) {
        const label = kind === 'nats' ? `nats-server of ${name.replace(/^nats-/, '')}` : `node ${name}`;
        process.stderr.write(
          `\n${C.red}regions: ${label} (pid ${proc.pid ?? '?'}) exited unexpectedly: ${info}${C.reset}\n` +
            (child.tail.length ? `  last output:\n${child.tail.slice(-15).map((l) => `    ${l}`).join('\n')}\n` : '') +
            `  full log: ${logFile}\n`,
        );
        void shutdown(1);
      }
    };
    proc.once('exit', (code, signal) => finish(signal ? `killed by ${signal}` : `exit code ${code}`));
    proc.once('error', (err) => finish(`failed to start: ${err.message}`));
  });
  proc.once('close', () => log.end()); // after the last output line was read
  children.push(child);
  return child;
}

async function stopChildren(list: Child[]): Promise<void> {
  await Promise.all(
    list.map(async (c) => {
      if (!c.running) return;
      c.proc.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (c.running) {
          process.stderr.write(`regions: ${c.name} did not stop in ${STOP_GRACE_MS / 1000} s; killing it\n`);
          c.proc.kill('SIGKILL');
        }
      }, STOP_GRACE_MS);
      await c.exited;
      clearTimeout(timer);
    }),
  );
}

// Last resort: never leave a child behind, even when the launcher dies of an error.
process.on('exit', () => {
  for (const c of children) {
    if (c.running) {
      try {
        c.proc.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Shutdown

let dataRoot: string | undefined;
let removeDataRoot = false;
let shutdownPromise: Promise<never> | undefined;
let prometheus: PrometheusServer | undefined;

function shutdown(code: number): Promise<never> {
  shutdownPromise ??= (async () => {
    stopping = true;
    startup.abort(new Stopped());
    if (prometheus) say('stopping prometheus...');
    await prometheus?.stop();
    const nodes = children.filter((c) => c.kind === 'node' && c.running);
    const servers = children.filter((c) => c.kind === 'nats' && c.running);
    if (nodes.length) say(`stopping ${nodes.length} node(s)...`);
    await stopChildren(nodes);
    natsStopping = true;
    if (servers.length) say(`stopping ${servers.length} nats-server(s)...`);
    await stopChildren(servers);
    if (dataRoot) {
      if (removeDataRoot && code !== 0) {
        say(`kept ${dataRoot} for its logs (remove it when done)`);
      } else if (removeDataRoot) {
        await rm(dataRoot, { recursive: true, force: true }).catch((err: unknown) => {
          process.stderr.write(`regions: could not remove ${dataRoot}: ${(err as Error).message}\n`);
        });
        say(`removed ${dataRoot}`);
      } else say(`data kept in ${dataRoot}`);
    }
    say(code === 0 ? 'stopped' : `stopped (exit ${code})`);
    process.exit(code);
  })();
  return shutdownPromise;
}

let repeatNoted = false;
const onSignal = (signal: NodeJS.Signals) => {
  if (stopping) {
    // Under `npm run` one Ctrl-C can arrive twice (terminal and npm both signal): never force.
    if (!repeatNoted) say(`(${signal}: already stopping; a child that hangs is killed after ${STOP_GRACE_MS / 1000} s)`);
    repeatNoted = true;
    return;
  }
  say(`\n${signal}: shutting down`);
  void shutdown(0);
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
// Children run in their own process groups: a closed terminal must stop them through us too.
process.on('SIGHUP', onSignal);
process.stdout.on('error', () => {});

// ---------------------------------------------------------------------------------------------
// Main

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  verbose = opts.verbose;
  const problem = natsServerProblem() ?? (opts.prometheus ? prometheusProblem() : undefined);
  if (problem) fail(problem);
  let topology: Topology;
  try {
    topology = loadTopology();
  } catch (err) {
    if (err instanceof TopologyError) fail(err.message);
    throw err;
  }
  const regions = plan(topology, opts.portOffset);
  const busy: string[] = [];
  const prometheusPort = 9090 + opts.portOffset;
  const ports = [...portsOf(regions), ...(opts.prometheus ? [{ port: prometheusPort, what: 'Prometheus' }] : [])];
  for (const { port, what } of ports) if (!(await portFree(port))) busy.push(`  ${port} (${what})`);
  if (busy.length) {
    fail(
      `port(s) already in use on ${HOST}:\n${busy.join('\n')}\n` +
        `Is another "npm run regions" or nats-server running? Stop it, or shift every port with --port-offset N.`,
    );
  }

  if (opts.keepData) {
    mkdirSync(opts.keepData, { recursive: true });
    dataRoot = opts.keepData;
  } else {
    dataRoot = await mkdtemp(join(os.tmpdir(), 'limiter-launcher-'));
    removeDataRoot = true;
  }
  const logDir = join(dataRoot, 'logs');
  mkdirSync(logDir, { recursive: true });

  // NATS: the generated layout, every listener on 127.0.0.1, gateways dialled on 127.0.0.1;
  // configs and stores in <root>/nats/<region>/.
  const t0 = Date.now();
  say(`starting ${regions.length} nats-servers (${regions.map((r) => r.name).join(', ')}), data in ${dataRoot}`);
  const natsChildren = new Map<string, Child>();
  // Every node its own NATS user (regions/auth.ts): fresh keys each run, seeds in <root>/secrets.
  const creds = generateCredentials(topology.regions.flatMap((r) => r.nodes.map((n) => n.id)));
  const secrets = join(dataRoot, 'secrets');
  writeCredentials(secrets, creds);
  const sc = await startSupercluster({
    topology,
    credentials: creds,
    ports: Object.fromEntries(regions.map((r) => [r.name, r.nats])),
    root: join(dataRoot, 'nats'),
    detached: true,
    ready: false,
    onSpawn: (server, proc) => {
      const name = natsServerName(server.name);
      natsChildren.set(server.name, watchChild('nats', name, proc, join(logDir, `${name}.log`)));
    },
    onLine: (server, line) => natsChildren.get(server.name)?.line(line),
  });
  await sc.waitReady(NATS_READY_TIMEOUT_MS, startup.signal);
  say(`JetStream ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  // Streams are the admin user's to create: the nodes' users may not.
  const provisioned = await provisionDeployment({ servers: regions[0]!.natsUrl, regions: regions.map((r) => r.name), nkeySeed: creds.get(ADMIN_USER)!.seed, maxAgeMs: DEFAULT_MAX_AGE_MS });
  say(`streams provisioned by the admin user: ${provisioned.map((p) => `${p.stream} (${p.outcome})`).join(', ')}`);

  const allRegions = regions.map((r) => r.name).join(',');
  const nodeCount = regions.reduce((n, r) => n + r.nodes.length, 0);
  say(`starting ${nodeCount} limiter node(s) with rules ${opts.rules}`);
  const started: Array<{ region: PlannedRegion; id: string; child: Child; url: Promise<string> }> = [];
  const launchNode = (r: PlannedRegion, n: { id: string; httpPort: number }) => {
    const args = [
      '--node-id', n.id,
      '--region', r.name,
      '--regions', allRegions,
      '--nats', r.natsUrl,
      '--nats-nkey-file', seedFile(secrets, n.id),
      '--rules', opts.rules,
      '--data', join(dataRoot!, 'nodes', n.id),
      '--host', HOST,
      '--port', String(n.httpPort),
    ];
    // Output arrives after this function has returned: `child` is set by then. The admin token
    // (the rules API) is passed on from this environment, the same to every node.
    const env = process.env.LIMITER_ADMIN_TOKEN !== undefined ? { LIMITER_ADMIN_TOKEN: process.env.LIMITER_ADMIN_TOKEN } : undefined;
    const p = spawnNodeProcess(args, { name: `node ${n.id}`, env, detached: true, listenTimeoutMs: NODE_LISTEN_TIMEOUT_MS, maxLogLines: 0, onLine: (line) => child.line(line) });
    const child = watchChild('node', n.id, p.proc, join(logDir, `${n.id}.log`));
    const s = { region: r, id: n.id, child, url: p.listening };
    started.push(s);
    return s;
  };
  // The streams exist: every node only adds its own durable consumers, so all start together.
  for (const r of regions) for (const n of r.nodes) launchNode(r, n);
  const urls = await Promise.all(started.map((s) => s.url));
  say(`${nodeCount} node(s) listening after ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);

  const listed = started
    .map((s, i) => ({ ...s, url: urls[i]! }))
    .sort((x, y) => x.region.name.localeCompare(y.region.name) || x.id.localeCompare(y.id));
  const rows = [['REGION', 'NODE', 'URL', 'NATS', 'PID']];
  for (const s of listed) rows.push([s.region.name, s.id, s.url, s.region.natsUrl, String(s.child.proc.pid ?? '?')]);
  for (const line of table(rows)) say(`  ${line}`);
  const natsRows = [['REGION', 'NATS SERVER', 'MONITOR', 'PID']];
  for (const r of regions) natsRows.push([r.name, natsServerName(r.name), r.monitorUrl, String(sc.region(r.name).pid)]);
  say('');
  for (const line of table(natsRows)) say(`  ${line}`);
  const a = listed[listed.length - 1]!.url;
  const b = listed[0]!.url;
  say('');
  say(`try:  curl -s -X POST ${a}/v1/check -H 'content-type: application/json' -d '{"key":"demo"}'`);
  say(`      curl -s '${b}/v1/usage?key=demo'    # the same count, seen from another region`);
  if (process.env.LIMITER_ADMIN_TOKEN) {
    say(`      curl -s -X PUT ${a}/v1/rules/demo -H "authorization: Bearer $LIMITER_ADMIN_TOKEN" -H 'content-type: application/json' -d '{"key":"demo","limits":[{"limit":5,"window":"1m"}]}'`);
    say(`      curl -s ${b}/v1/rules -H "authorization: Bearer $LIMITER_ADMIN_TOKEN"    # the change, in force in another region`);
  } else say('      (set LIMITER_ADMIN_TOKEN before npm run regions to try the rules API: every node gets it)');
  say(`dashboard: ${b}/dashboard?key=demo&nodes=${listed.map((s) => s.url).join(',')}`);
  if (opts.prometheus) {
    mkdirSync(join(dataRoot, 'prometheus'), { recursive: true });
    prometheus = await startPrometheus({
      targets: listed.map((s) => ({ metricsUrl: `${s.url}/metrics`, node: s.id, region: s.region.name })),
      port: prometheusPort,
      dir: join(dataRoot, 'prometheus'),
    });
    say(`prometheus: ${prometheus.url}  (scrapes every node each second; try the query sum by (region) (rate(regionlimit_checks_total[1m])))`);
  }
  say(`logs: ${logDir}/<name>.log (terminal shows ${verbose ? 'every line' : 'warn/error lines only; --verbose for all'})`);
  say(`data: ${dataRoot}${removeDataRoot ? ' (removed on exit)' : ' (kept)'}`);
  say(`ready: ${nodeCount} node(s) in ${regions.length} region(s). Ctrl-C to stop.`);
}

main().catch(async (err: unknown) => {
  if (err instanceof Stopped || stopping) {
    await (shutdownPromise ?? shutdown(1));
    return;
  }
  // The first line only: the rest of a support/ error is the process's log, shown as its tail below.
  const message = ((err as Error)?.message ?? String(err)).split('\n')[0]!;
  process.stderr.write(`${C.red}regions: start-up failed: ${message}${C.reset}\n`);
  for (const c of children) {
    if (c.running && c.tail.length && message.includes(c.name.replace(/^nats-/, ''))) {
      process.stderr.write(`  last output of ${c.name}:\n${c.tail.slice(-15).map((l) => `    ${l}`).join('\n')}\n`);
    }
  }
  await shutdown(1);
});
