/**
 * The child side of `LanceStore.optimize`: lowers its own priority before LanceDB starts its
 * threads (they inherit it), opens the store the parent names and optimises it here.
 */
import { setPriority } from "node:os";

process.once(
  "message",
  async (m: { dir: string; opts: Record<string, unknown>; indexed: boolean; optimize: { final?: boolean } }) => {
    try {
      const nice = Number(process.env.QDC_NICE ?? 0);
      if (nice > 0) setPriority(0, nice);
      const { LanceStore } = await import("./lancedb.js");
      const store = await LanceStore.open(m.dir, undefined, m.opts);
      await store.optimizeHere(m.indexed, m.optimize);
      await store.close();
      process.exit(0);
    } catch (e) {
      process.send?.({ error: e instanceof Error ? e.message : String(e) }, () => process.exit(1));
    }
  },
);
// the parent went away: its optimize is abandoned (LanceDB commits are atomic)
process.on("disconnect", () => process.exit(0));
