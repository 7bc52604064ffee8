/**
 * --watch-rules: an edit of the rules file is applied like a PUT from this node. The file's
 * directory is watched (editors often replace a file rather than write it in place), changes
 * are debounced, and a content that differs from the one last applied is a change. An invalid
 * edit is refused with its problems logged; the rules in force stay.
 */
import { watch, readFileSync, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import { LimiterError } from '../engine/errors.ts';
import { parseDocument, sha256 } from './document.ts';
import type { RulesRegister } from './register.ts';

export interface RulesWatcher {
  close(): void;
}

export function watchRulesFile(file: string, register: RulesRegister, logger: Logger, debounceMs = 200): RulesWatcher {
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const apply = () => {
    timer = undefined;
    if (closed) return;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      logger.warn({ err, file }, 'rules file cannot be read; the rules in force stay');
      return;
    }
    const hash = sha256(text);
    if (hash === register.appliedFileHash) return;
    register.change(() => parseDocument(text, file), { source: 'rules file', fileHash: hash }).then(
      ({ version }) => logger.info({ file, version }, 'rules file edit applied'),
      (err: unknown) => {
        const problems = err instanceof LimiterError ? err.details?.problems : undefined;
        logger.error({ file, problems, err: problems === undefined ? err : undefined }, 'rules file edit refused; the rules in force stay');
      },
    );
  };
  const name = basename(file);
  const watcher: FSWatcher = watch(dirname(file), (_event, changed) => {
    if (changed !== null && changed !== name) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(apply, debounceMs);
  });
  watcher.on('error', (err) => logger.error({ err, file }, 'watching the rules file failed'));
  watcher.unref();
  return {
    close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      watcher.close();
    },
  };
}
