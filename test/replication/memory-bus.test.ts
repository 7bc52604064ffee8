/** The in-memory bus passes the transport contract. */
import { MemoryBus } from '../../src/replication/memory-bus.ts';
import { transportContract } from './transport-contract.ts';

transportContract('in-memory bus', async () => {
  const bus = new MemoryBus({ regions: ['a', 'b'] });
  return {
    transport: async (region, node) => {
      const t = bus.transport(region, node);
      await t.start();
      return t;
    },
    close: async () => {},
  };
});
