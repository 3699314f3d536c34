/**
 * Columns and ids of TREC files (runs: `qid Q0 docid rank score tag`; qrels: `qid 0 docid rel`), as
 * trec_eval reads them (get_trec_results.c, get_qrels.c): columns are separated by C's isspace
 * characters, so an id can hold no whitespace, and a line whose first character is `#` is a
 * comment (trec_eval 10).
 */

/** C's isspace in the C locale: what separates the columns of a TREC file. */
export const TREC_SPACE = /[ \t\n\v\f\r]+/;

/** The columns of a TREC line. */
export function trecColumns(line: string): string[] {
  const t = line.replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, "");
  return t === "" ? [] : t.split(TREC_SPACE);
}

export type TrecField = "query id" | "document id" | "run tag";

/**
 * Why an id cannot be written to a TREC run or qrels file, or null when it can: empty, containing
 * whitespace (any, Unicode included: qdc's readers and others split on it), or, for a query id, a
 * leading `#` (trec_eval 10 reads the line as a comment).
 */
export function trecIdProblem(id: string, kind: TrecField): string | null {
  if (id === "") return `an empty ${kind}: TREC files separate columns by whitespace, so a column cannot be empty`;
  if (/\s/u.test(id))
    return `the ${kind} ${JSON.stringify(id)} contains whitespace: TREC run and qrels files separate columns by whitespace, so trec_eval and qdc eval could not read it back`;
  if (kind === "query id" && id.startsWith("#"))
    return `the query id ${JSON.stringify(id)} starts with '#': trec_eval 10 reads such a line as a comment`;
  return null;
}

/** Throws when `id` cannot be written to a TREC file (see trecIdProblem), naming the file and the id. */
export function assertTrecId(file: string, id: string, kind: TrecField): void {
  const problem = trecIdProblem(id, kind);
  if (problem) throw new Error(`${file}: cannot write it: ${problem}`);
}

/**
 * For a line with more columns than its format has (`width`, the iteration column "Q0"/"0" second,
 * the document id third): which id most likely holds whitespace, as a phrase for an error message.
 */
export function whitespaceIdHint(cols: string[], width: number): string {
  if (cols.length <= width) return "";
  const iter = cols.findIndex((c, i) => i >= 1 && /^(q?0)$/i.test(c));
  const extra = cols.length - width;
  if (iter > 1) return `; the query id ${JSON.stringify(cols.slice(0, iter).join(" "))} seems to contain whitespace`;
  if (iter === 1)
    return `; the document id ${JSON.stringify(cols.slice(2, 3 + extra).join(" "))} seems to contain whitespace`;
  return "; an id seems to contain whitespace";
}
