/**
 * Interns node ids to small integers so per-key state can refer to nodes by index.
 * Index 0 is always the local node (the only node whose cells this replica ever raises).
 */
export class NodeTable {
  private readonly byName = new Map<string, number>();
  private readonly names: string[] = [];

  constructor(readonly self: string) {
    this.intern(self);
  }

  intern(name: string): number {
    let i = this.byName.get(name);
    if (i === undefined) {
      i = this.names.length;
      this.names.push(name);
      this.byName.set(name, i);
    }
    return i;
  }

  lookup(name: string): number | undefined {
    return this.byName.get(name);
  }

  name(index: number): string {
    const n = this.names[index];
    if (n === undefined) throw new RangeError(`unknown node index ${index}`);
    return n;
  }

  get size(): number {
    return this.names.length;
  }

  all(): readonly string[] {
    return this.names;
  }
}
