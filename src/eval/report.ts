/**
 * The benchmark's results: the matrix R[T][j] (score on task j after training on task T) of every
 * setting, its average over tasks after the last one, backward transfer and forgetting, as JSON, a
 * markdown table and an SVG figure (heatmaps and a bar chart).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export const SETTINGS = [
  "zero_shot",
  "ft_reindex",
  "ft_no_reindex",
  "ft_qdc",
  "kd_no_reindex",
  "kd_qdc",
  "kd_auto",
  "joint",
] as const;
export type SettingKey = (typeof SETTINGS)[number];

export const SETTING_LABELS: Record<SettingKey, string> = {
  zero_shot: "zero-shot base",
  ft_reindex: "FT, re-indexed",
  ft_no_reindex: "FT, no re-index",
  ft_qdc: "FT + QDC (mean)",
  kd_no_reindex: "FT+KD, no re-index",
  kd_qdc: "FT+KD + QDC (mean)",
  kd_auto: "FT+KD + auto compensator",
  joint: "joint training (upper bound)",
};

export interface SettingResult {
  label: string;
  /** R[T-1][j-1]; null where not evaluated (j > T, or joint only after the last task) */
  R: (number | null)[][];
  /** mean over tasks of the last row */
  average: number | null;
  /** mean over j < n of R[n][j] − R[j][j] */
  backwardTransfer: number | null;
  /** mean over j < n of max_{j ≤ l < n} R[l][j] − R[n][j] */
  forgetting: number | null;
}

export interface BenchmarkReport {
  name: string;
  machine: string;
  device: string;
  threads: number;
  tasks: string[];
  measure: string;
  settings: Record<string, SettingResult>;
  stages: { stage: string; seconds: number; device: string }[];
  totalSeconds: number;
  cells: { setting: string; T: number; j: number; scores: Record<string, number> }[];
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);

export function summarise(input: Omit<BenchmarkReport, "settings" | "totalSeconds">): BenchmarkReport {
  const n = input.tasks.length;
  const settings: Record<string, SettingResult> = {};
  for (const s of SETTINGS) {
    const R: (number | null)[][] = Array.from({ length: n }, () => Array.from({ length: n }, () => null));
    let any = false;
    for (const c of input.cells) {
      if (c.setting !== s) continue;
      const v = c.scores[input.measure];
      if (v === undefined) throw new Error(`cell ${s} T=${c.T} j=${c.j} has no ${input.measure}`);
      (R[c.T - 1] as (number | null)[])[c.j - 1] = v;
      any = true;
    }
    if (!any) continue;
    const last = R[n - 1] as (number | null)[];
    const lastFull = last.every((v) => v !== null);
    const bwt: number[] = [];
    const forget: number[] = [];
    for (let j = 0; j < n - 1; j++) {
      const diag = R[j]?.[j];
      const fin = last[j];
      if (diag == null || fin == null) continue;
      bwt.push(fin - diag);
      const seen = R.slice(j, n - 1)
        .map((row) => row[j])
        .filter((v): v is number => v != null);
      forget.push(Math.max(...seen) - fin);
    }
    settings[s] = {
      label: SETTING_LABELS[s],
      R,
      average: lastFull ? mean(last as number[]) : null,
      backwardTransfer: n > 1 && bwt.length === n - 1 ? mean(bwt) : null,
      forgetting: n > 1 && forget.length === n - 1 ? mean(forget) : null,
    };
  }
  return {
    name: input.name,
    machine: input.machine,
    device: input.device,
    threads: input.threads,
    tasks: input.tasks,
    measure: input.measure,
    settings,
    stages: input.stages,
    totalSeconds: input.stages.reduce((a, s) => a + s.seconds, 0),
    cells: input.cells,
  };
}

const f = (v: number | null | undefined, signed = false) =>
  v == null ? "–" : `${signed && v > 0 ? "+" : ""}${(100 * v).toFixed(1)}`;

/** Markdown: the last-task table, every setting's matrix, and the stage times. */
export function formatMarkdown(r: BenchmarkReport): string {
  const head = `| setting | ${r.tasks.join(" | ")} | average | BWT | forgetting |`;
  const sep = `|---|${r.tasks.map(() => "---:").join("|")}|---:|---:|---:|`;
  const rows = Object.values(r.settings).map(
    (s) =>
      `| ${s.label} | ${(s.R[r.tasks.length - 1] ?? []).map((v) => f(v)).join(" | ")} | ${f(s.average)} | ${f(s.backwardTransfer, true)} | ${f(s.forgetting)} |`,
  );
  const matrices = Object.values(r.settings)
    .map((s) => {
      const h = `| after \\ on | ${r.tasks.join(" | ")} |\n|---|${r.tasks.map(() => "---:").join("|")}|`;
      const body = s.R.map((row, T) => `| ${r.tasks[T]} | ${row.map((v) => f(v)).join(" | ")} |`).join("\n");
      return `**${s.label}**\n\n${h}\n${body}`;
    })
    .join("\n\n");
  const stages = r.stages.map((s) => `| ${s.stage} | ${s.seconds.toFixed(1)} | ${s.device} |`).join("\n");
  return `# Continual retrieval benchmark \`${r.name}\`

${r.measure} × 100 on each task after training on the last one (${r.tasks.join(" → ")}), the average over
tasks, backward transfer (BWT: final − just-trained score, mean over earlier tasks) and forgetting
(best earlier score − final, mean over earlier tasks). Machine: ${r.machine}; device ${r.device}, ${r.threads} threads.

${head}
${sep}
${rows.join("\n")}

## R[T][j]: ${r.measure} × 100 on task j (columns) after training on task T (rows)

${matrices}

## Wall time per stage (${r.totalSeconds.toFixed(0)} s in all, summed over every invocation on this run folder)

| stage | seconds | device |
|---|---:|---|
${stages}
`;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** An SVG figure: one heatmap of R per setting, and a bar chart of the final averages. */
export function renderSvg(r: BenchmarkReport): string {
  const settings = Object.values(r.settings);
  const n = r.tasks.length;
  const cell = 34;
  const pad = 70;
  const mapW = n * cell + pad + 20;
  const mapH = n * cell + pad + 10;
  const cols = 4;
  const rows = Math.ceil(settings.length / cols);
  const barTop = rows * mapH + 40;
  const barH = settings.length * 24 + 60;
  const width = Math.max(cols * mapW, 760);
  const height = barTop + barH;
  const max = Math.max(1e-9, ...settings.flatMap((s) => s.R.flat().filter((v): v is number => v != null)));
  const colour = (v: number) => {
    const t = Math.max(0, Math.min(1, v / max));
    const mix = (a: number, b: number) => Math.round(a + (b - a) * t);
    return `rgb(${mix(247, 8)},${mix(251, 69)},${mix(255, 148)})`;
  };
  const parts: string[] = [];
  settings.forEach((s, i) => {
    const x0 = (i % cols) * mapW;
    const y0 = Math.floor(i / cols) * mapH;
    parts.push(`<text x="${x0 + pad}" y="${y0 + 18}" font-size="12" font-weight="bold">${esc(s.label)}</text>`);
    r.tasks.forEach((t, j) => {
      parts.push(
        `<text x="${x0 + pad + j * cell + cell / 2}" y="${y0 + pad - 6}" font-size="9" text-anchor="end" transform="rotate(-45 ${x0 + pad + j * cell + cell / 2} ${y0 + pad - 6})">${esc(t)}</text>`,
      );
      parts.push(
        `<text x="${x0 + pad - 4}" y="${y0 + pad + j * cell + cell / 2 + 3}" font-size="9" text-anchor="end">${esc(t)}</text>`,
      );
    });
    s.R.forEach((row, T) => {
      row.forEach((v, j) => {
        if (v == null) return;
        const x = x0 + pad + j * cell;
        const y = y0 + pad + T * cell;
        parts.push(
          `<rect x="${x}" y="${y}" width="${cell - 1}" height="${cell - 1}" fill="${colour(v)}"><title>${esc(s.label)}: after ${esc(r.tasks[T] ?? "")}, on ${esc(r.tasks[j] ?? "")}: ${(100 * v).toFixed(1)}</title></rect>`,
        );
        parts.push(
          `<text x="${x + cell / 2}" y="${y + cell / 2 + 3}" font-size="9" text-anchor="middle" fill="${v / max > 0.55 ? "white" : "black"}">${(100 * v).toFixed(0)}</text>`,
        );
      });
    });
  });
  parts.push(
    `<text x="10" y="${barTop}" font-size="13" font-weight="bold">Average ${esc(r.measure)} × 100 over tasks after the last task</text>`,
  );
  const barX = 230;
  const barMax = width - barX - 60;
  settings.forEach((s, i) => {
    const y = barTop + 16 + i * 24;
    parts.push(`<text x="${barX - 8}" y="${y + 13}" font-size="11" text-anchor="end">${esc(s.label)}</text>`);
    if (s.average == null) {
      parts.push(`<text x="${barX}" y="${y + 13}" font-size="11" fill="#888">not evaluated after every task</text>`);
      return;
    }
    const w = (s.average / max) * barMax;
    parts.push(
      `<rect x="${barX}" y="${y}" width="${w.toFixed(1)}" height="18" fill="${colour(s.average)}" stroke="#08306b" stroke-width="0.5"/>`,
    );
    parts.push(`<text x="${barX + w + 5}" y="${y + 13}" font-size="11">${(100 * s.average).toFixed(1)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="${height - 8}" font-size="10" fill="#555">qdc benchmark ${esc(r.name)} — ${esc(r.machine)}, ${esc(r.device)}; rows: after training on task T, columns: evaluated task j</text>
${parts.join("\n")}
</svg>
`;
}

/** Writes results.json, results.md and figure.svg into `dir`. */
export function writeReport(dir: string, r: BenchmarkReport): void {
  writeFileSync(join(dir, "results.json"), `${JSON.stringify(r, null, 1)}\n`);
  writeFileSync(join(dir, "results.md"), formatMarkdown(r));
  writeFileSync(join(dir, "figure.svg"), renderSvg(r));
}
