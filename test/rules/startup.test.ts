/**
 * Which rules a node starts with (src/rules/startup.ts): the file in a new data directory, the
 * stored rules while the file is unchanged, the file as a new change once it is edited (a local
 * file stays local), and the file when the stored rules cannot be used.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/engine/errors.ts';
import { sha256 } from '../../src/rules/document.ts';
import { startupRules } from '../../src/rules/startup.ts';
import { MemoryStore } from '../../src/storage/memory.ts';

const log = pino({ level: 'silent' });
const doc = (limit: number) => ({ version: 1, rules: [{ id: 'a', key: '*', limits: [{ limit, window: '1m' }] }] });
const file = (limit: number) => ({ text: JSON.stringify(doc(limit)), file: 'rules.json' });

describe('start-up rules', () => {
  it('a new data directory starts from the file, as a local version that is never published', async () => {
    const s = await startupRules(new MemoryStore(), file(5), 'n1', 1_000, log);
    expect(s.from).toBe('file');
    expect(s.initial.version).toEqual({ ts: 0, node: 'n1' });
    expect(s.publishInitial).toBe(false);
    expect(s.config.rules[0].limits[0].limit).toBe(5);
    expect(s.initial.fileHash).toBe(sha256(file(5).text));
  });

  it('the stored rules win while the file is unchanged since it was last applied', async () => {
    const store = new MemoryStore();
    const text = JSON.stringify(doc(9));
    store.saveRules({ version: { ts: 5_000, node: 'n2' }, digest: sha256(text), document: text, fileHash: sha256(file(5).text) });
    const s = await startupRules(store, file(5), 'n1', 1_000, log);
    expect(s.from).toBe('stored');
    expect(s.initial.version).toEqual({ ts: 5_000, node: 'n2' });
    expect(s.config.rules[0].limits[0].limit).toBe(9);
  });

  it('a file edited since wins as a new change from this node, greater than the stored version even with the clock behind', async () => {
    const store = new MemoryStore();
    const text = JSON.stringify(doc(9));
    store.saveRules({ version: { ts: 5_000, node: 'n2' }, digest: sha256(text), document: text, fileHash: sha256(file(5).text) });
    const s = await startupRules(store, file(7), 'n1', 1_000, log);
    expect(s.from).toBe('file-edited');
    expect(s.initial.version).toEqual({ ts: 5_001, node: 'n1' });
    expect(s.publishInitial).toBe(true);
    expect(s.config.rules[0].limits[0].limit).toBe(7);
  });

  it('an edited file stays local while nothing was ever changed at run time', async () => {
    const store = new MemoryStore();
    store.saveRules({ version: { ts: 0, node: 'n1' }, digest: 'd', document: JSON.stringify(doc(5)), fileHash: sha256(file(5).text) });
    const s = await startupRules(store, file(6), 'n1', 1_000, log);
    expect([s.from, s.initial.version.ts, s.publishInitial]).toEqual(['file', 0, false]);
  });

  it('stored rules that no longer validate, or cannot be read, give way to the file; an invalid file stops start-up', async () => {
    const store = new MemoryStore();
    store.saveRules({ version: { ts: 5_000, node: 'n2' }, digest: 'd', document: '{"rules":[{"id":"a"}]}', fileHash: sha256(file(5).text) });
    expect((await startupRules(store, file(5), 'n1', 1_000, log)).config.rules[0].limits[0].limit).toBe(5);
    const broken = new MemoryStore();
    broken.setMeta('rules', 'not json');
    expect((await startupRules(broken, file(5), 'n1', 1_000, log)).from).toBe('file');
    await expect(startupRules(new MemoryStore(), { text: '{"rules": 1}', file: 'bad.json' }, 'n1', 1_000, log)).rejects.toBeInstanceOf(ConfigError);
  });
});
