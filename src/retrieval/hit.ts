/**
 * The one search result type of qdc: the exact index, the vector stores, the service and the TREC
 * writer all speak it, and results gathered from several model versions are merged here.
 */

export type FieldValue = string | number;

export interface Hit {
  id: string;
  /** cosine similarity (dot product of normalised vectors) */
  score: number;
  /** the model version that embedded the document */
  version: string;
  /** the document's filterable fields (stores only) */
  fields?: Record<string, FieldValue>;
}

/**
 * Merges per-version hit lists of one query: score descending, ties by id, each document once
 * (a document is in one version at a time, but a re-index can move it between the searches of two
 * versions), at most `k`.
 */
export function mergeHits<H extends Hit>(lists: H[][], k: number): H[] {
  if (lists.length === 1) return (lists[0] as H[]).slice(0, k);
  const all = lists.flat().sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const seen = new Set<string>();
  const top: H[] = [];
  for (const h of all) {
    if (seen.has(h.id)) continue;
    seen.add(h.id);
    top.push(h);
    if (top.length === k) break;
  }
  return top;
}
