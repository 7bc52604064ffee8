/**
 * The files a node reads once at start (src/node.ts): the rules file, PEM files for HTTPS, and
 * the NATS credentials. An unreadable or malformed file stops start-up with a ConfigError
 * naming it.
 */
import { readFileSync } from 'node:fs';
import type { NodeConfig } from './config.ts';
import { ConfigError } from './engine/errors.ts';
import type { TransportOptions } from './replication/jetstream/index.ts';
import type { RulesSource } from './rules/startup.ts';

/** The start-up rules: the inline document, or the --rules file's text. */
export function rulesSource(config: NodeConfig, doc: object | undefined): RulesSource {
  if (doc !== undefined) return { text: JSON.stringify(doc), file: '<inline rules>' };
  try {
    return { text: readFileSync(config.rules, 'utf8'), file: config.rules };
  } catch (cause) {
    throw new ConfigError([{ code: 'CONFIG_UNREADABLE', file: config.rules, path: '', message: `cannot read: ${(cause as Error).message}` }], 'CONFIG_UNREADABLE');
  }
}

export function readPem(file: string, flag: string): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new ConfigError([{ code: 'CONFIG_UNREADABLE', file, path: '', message: `${flag}: cannot read: ${(cause as Error).message}` }], 'CONFIG_UNREADABLE');
  }
}

/** The NATS credentials and TLS files of the configuration, read once at start. */
export function natsCredentials(config: NodeConfig): Pick<TransportOptions, 'nkeySeed' | 'tls'> {
  const out: Pick<TransportOptions, 'nkeySeed' | 'tls'> = {};
  if (config.natsNkeyFile !== '') {
    try {
      out.nkeySeed = readFileSync(config.natsNkeyFile, 'utf8').trim();
    } catch (err) {
      throw new ConfigError([{ code: 'CONFIG_UNREADABLE', file: config.natsNkeyFile, path: '/natsNkeyFile', message: `cannot read the NATS nkey seed: ${(err as Error).message}` }], 'CONFIG_UNREADABLE');
    }
    if (!/^SU[A-Z2-7]{56}$/.test(out.nkeySeed)) {
      throw new ConfigError([{ code: 'CONFIG_INVALID', file: config.natsNkeyFile, path: '/natsNkeyFile', message: 'not an nkey user seed (one line starting with "SU", 58 characters)' }]);
    }
  }
  if (config.natsTlsCa !== '' || config.natsTlsCert !== '') {
    out.tls = {
      ...(config.natsTlsCa !== '' ? { caFile: config.natsTlsCa } : {}),
      ...(config.natsTlsCert !== '' ? { certFile: config.natsTlsCert, keyFile: config.natsTlsKey } : {}),
    };
  }
  return out;
}
