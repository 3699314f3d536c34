/**
 * Stores written by earlier releases tag rows with the embedding model's directory path;
 * `migrateStore` retags them with the model's content id (the model must still be at that path)
 * and rewrites the recorded service state the same way (`qdc migrate`).
 */
import { isModelId, versionId } from "../lineage/index.js";
import type { VectorStore } from "./store.js";

export interface StoreMigration {
  /** path version → id, for the versions retagged */
  retagged: Record<string, string>;
  /** path versions whose model is gone (left as they are) */
  missing: string[];
  /** the recorded service state was rewritten */
  state: boolean;
}

export async function migrateStore(store: VectorStore): Promise<StoreMigration> {
  const out: StoreMigration = { retagged: {}, missing: [], state: false };
  for (const v of Object.keys(await store.versions())) {
    if (isModelId(v)) continue;
    const id = versionId(v);
    if (id === null) out.missing.push(v);
    else {
      await store.renameVersion(v, id);
      out.retagged[v] = id;
    }
  }
  const state = await store.readState();
  if (state && !isModelId(state.model)) {
    const id = out.retagged[state.model] ?? versionId(state.model);
    if (id !== null) {
      const reindex = state.reindex;
      const target = typeof reindex?.target === "string" ? reindex.target : null;
      await store.writeState({
        ...state,
        model: id,
        modelDir: state.model,
        ...(reindex && target && !isModelId(target) ? { reindex: { ...reindex, target: versionId(target) } } : {}),
      });
      out.state = true;
    }
  }
  return out;
}
