/**
 * Which rules a node starts with: the state it stored, or its --rules file.
 *
 * - No stored state (a new data directory): the file, as this node's local starting point
 *   (version 0: never replicated, and any replicated version wins over it once one arrives).
 * - A stored state and the file unchanged since this node last applied it (same SHA-256): the
 *   stored state, which may be newer than the file (a change through the API or from a peer).
 * - A stored state and a file edited since: the file, as a new change from this node, with a
 *   version greater than the stored one, published when replication starts. When the stored
 *   state is still a local one (nothing was ever changed at run time) the file stays local.
 *
 * So an operator's edit of the file is never silently ignored, and a node restarted with the
 * same file never silently undoes a run-time change. A stored state that no longer validates
 * (an upgrade changed the schema) is logged and the file is used instead.
 */
import type { Logger } from 'pino';
import { nextVersion, type RegisterVersion } from '../../crdt/index.ts';
import type { RulesConfig } from '../engine/types.ts';
import type { RulesStore, StoredRules } from '../storage/ports.ts';
import { validateDocument } from './apply.ts';
import { documentText, parseDocument, sha256 } from './document.ts';

/** The rules a node starts from: a file's text (or an inline document's JSON) and its name. */
export interface RulesSource {
  text: string;
  file: string;
}

export interface StartupRules {
  initial: StoredRules;
  document: unknown;
  config: RulesConfig;
  /** The file was edited since it was last applied: publish it as a change. */
  publishInitial: boolean;
  /** Where the rules in force come from. */
  from: 'file' | 'stored' | 'file-edited';
}

/** Decide the start-up rules. Throws ConfigError when the file is used and is invalid. */
export async function startupRules(store: RulesStore, source: RulesSource, nodeId: string, now: number, logger: Logger): Promise<StartupRules> {
  const fileHash = sha256(source.text);
  let stored: StoredRules | undefined;
  try {
    stored = store.loadRules();
  } catch (err) {
    logger.error({ err }, 'cannot read the stored rules; starting from the rules file');
  }
  if (stored !== undefined && stored.fileHash === fileHash) {
    try {
      const document: unknown = JSON.parse(stored.document);
      const config = await validateDocument(document, 'stored rules');
      return { initial: stored, document, config, publishInitial: false, from: 'stored' };
    } catch (err) {
      logger.error({ err }, 'the stored rules are no longer valid; starting from the rules file');
    }
  }
  const document = parseDocument(source.text, source.file);
  const config = await validateDocument(document, source.file);
  const text = documentText(document, source.file);
  const edited = stored !== undefined && stored.version.ts > 0;
  const version: RegisterVersion = edited ? nextVersion(stored!.version, now, nodeId) : { ts: 0, node: nodeId };
  return { initial: { version, digest: sha256(text), document: text, fileHash }, document, config, publishInitial: edited, from: edited ? 'file-edited' : 'file' };
}
