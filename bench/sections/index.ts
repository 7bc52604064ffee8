/**
 * Every benchmark section, in run order. A new section is one module exporting a `Section`
 * plus one line here; `--only <id>` selects it.
 */
import type { Section } from '../lib/types.ts';
import { accuracySection } from './accuracy.ts';
import { clientSection } from './client.ts';
import { decideSection } from './decide.ts';
import { httpSection } from './http.ts';
import { memorySection } from './memory.ts';
import { replicationSection } from './replication/index.ts';
import { restartSection } from './restart.ts';
import { rulesSection } from './rules.ts';
import { rulesPropagationSection } from './rules-propagation.ts';

export const SECTIONS: readonly Section[] = [decideSection, accuracySection, httpSection, memorySection, restartSection, replicationSection, rulesSection, rulesPropagationSection, clientSection];
