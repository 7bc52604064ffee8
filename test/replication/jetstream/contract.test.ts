/** The JetStream transport passes the transport contract on real nats-servers (two regions). */
import { startSupercluster, type Supercluster } from '../../../support/supercluster.ts';
import { JetStreamTransport } from '../../../src/replication/jetstream/index.ts';
import { transportContract } from '../transport-contract.ts';

const REGIONS = ['a', 'b'];

transportContract(
  'JetStream',
  async () => {
    const sc: Supercluster = await startSupercluster({ regions: REGIONS });
    const open: JetStreamTransport[] = [];
    return {
      transport: async (region, node) => {
        const t = new JetStreamTransport({ servers: sc.region(region).url, region, regions: REGIONS, nodeId: node });
        open.push(t);
        await t.start();
        return t;
      },
      close: async () => {
        await Promise.allSettled(open.map((t) => t.close()));
        await sc.stopAll();
      },
    };
  },
  10_000,
);
