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

/**
 * Conservative text extents for laying out the figure without a font engine: an average
 * sans-serif character is about 0.55 em wide (0.6 bold); 0.62 / 0.68 em per character leave room for
 * wide letters. Ascent and descent are fractions of the font size.
 */
export const TEXT_METRICS = { em: 0.62, boldEm: 0.68, ascent: 0.8, descent: 0.25 };

/** The width of a text at a font size, counted in characters (code points). */
export function textWidth(text: string, size: number, bold = false): number {
  return [...text].length * size * (bold ? TEXT_METRICS.boldEm : TEXT_METRICS.em);
}

/** Axis-aligned box of a text drawn at (x, y) with an anchor, rotated about (x, y) by `angle` degrees (SVG). */
export function textBox(
  text: string,
  x: number,
  y: number,
  size: number,
  opts: { bold?: boolean; anchor?: "start" | "middle" | "end"; angle?: number } = {},
): { x0: number; y0: number; x1: number; y1: number } {
  const w = textWidth(text, size, opts.bold);
  const a0 = opts.anchor === "end" ? -w : opts.anchor === "middle" ? -w / 2 : 0;
  const rad = ((opts.angle ?? 0) * Math.PI) / 180;
  const cos = Math.cos(rad);
  const sin = Math.sin(rad);
  const xs: number[] = [];
  const ys: number[] = [];
  for (const dx of [a0, a0 + w])
    for (const dy of [-TEXT_METRICS.ascent * size, TEXT_METRICS.descent * size]) {
      xs.push(x + dx * cos - dy * sin);
      ys.push(y + dx * sin + dy * cos);
    }
  return { x0: Math.min(...xs), y0: Math.min(...ys), x1: Math.max(...xs), y1: Math.max(...ys) };
}

/** Greedy word wrap to `width`; a word longer than a line is cut. */
export function wrapText(text: string, width: number, size: number, bold = false): string[] {
  const max = Math.max(1, Math.floor(width / (size * (bold ? TEXT_METRICS.boldEm : TEXT_METRICS.em))));
  const lines: string[] = [];
  let line = "";
  for (let word of text.split(/\s+/).filter(Boolean)) {
    while ([...word].length > max) {
      if (line) {
        lines.push(line);
        line = "";
      }
      lines.push([...word].slice(0, max).join(""));
      word = [...word].slice(max).join("");
    }
    const next = line ? `${line} ${word}` : word;
    if ([...next].length > max) {
      lines.push(line);
      line = word;
    } else line = next;
  }
  if (line) lines.push(line);
  return lines;
}

/** A round step giving about `count` intervals over [0, max]. */
function niceStep(max: number, count: number): number {
  const raw = max / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
}

const fmt = (v: number) => String(Number(v.toFixed(2)));

const FONT = { title: 15, subtitle: 11, panel: 12, tick: 10, axis: 10, cell: 9, legend: 10, bar: 11 };
const MARGIN = 16;
const GAP = 28;
const CELL = 34;
const C45 = Math.SQRT1_2;

interface Panel {
  w: number;
  h: number;
  draw: (x0: number, y0: number) => string[];
}

/**
 * One setting's heatmap R[T][j], sized to its content: only the rows (T) and columns (j) that hold
 * a value, the column labels rotated −45° above the cells with room for their length, the row
 * labels to the left, and the two axis titles.
 */
function heatmapPanel(
  s: SettingResult,
  tasks: string[],
  colour: (v: number) => string,
  dark: (v: number) => boolean,
): Panel {
  const rows = s.R.map((_, T) => T).filter((T) => s.R[T]?.some((v) => v != null));
  const cols = tasks.map((_, j) => j).filter((j) => s.R.some((row) => row[j] != null));
  const asc = TEXT_METRICS.ascent;
  const desc = TEXT_METRICS.descent;
  const rowTitle = "after training on";
  const colTitle = "evaluated on";
  // horizontal: [row axis title (rotated −90°)] gap [row labels] gap [cells]
  const rowTitleRight = (asc + desc) * FONT.axis;
  const rowLabelW = Math.max(0, ...rows.map((T) => textWidth(tasks[T] as string, FONT.tick)));
  const gridLeft = Math.ceil(rowTitleRight + 6 + rowLabelW + 6);
  const gridW = cols.length * CELL;
  // vertical: [panel title] gap [column axis title] gap [column labels, rotated −45°] gap [cells]
  const titleBottom = FONT.panel * (1 + desc);
  const colLabelH = Math.max(0, ...cols.map((j) => (textWidth(tasks[j] as string, FONT.tick) + asc * FONT.tick) * C45));
  const colLabelRight = Math.max(
    0,
    ...cols.map(
      (j, k) => gridLeft + k * CELL + CELL / 2 + (textWidth(tasks[j] as string, FONT.tick) + desc * FONT.tick) * C45,
    ),
  );
  let gridTop = Math.ceil(titleBottom + 6 + FONT.axis * (asc + desc) + 4 + colLabelH + 4);
  const gridH = rows.length * CELL;
  // the rotated row axis title is centred on the cells; keep it below the panel title
  const rowTitleW = textWidth(rowTitle, FONT.axis);
  gridTop = Math.max(gridTop, Math.ceil(titleBottom + 4 + rowTitleW / 2 - gridH / 2));
  const w = Math.ceil(
    Math.max(
      textWidth(s.label, FONT.panel, true),
      gridLeft + gridW,
      colLabelRight,
      gridLeft + textWidth(colTitle, FONT.axis),
    ),
  );
  const h = Math.ceil(Math.max(gridTop + gridH, gridTop + gridH / 2 + rowTitleW / 2)) + 2;
  const draw = (x0: number, y0: number): string[] => {
    const out: string[] = [`<g class="panel" data-setting="${esc(s.label)}">`];
    out.push(
      `<text class="panel-title" x="${x0}" y="${y0 + FONT.panel}" font-size="${FONT.panel}" font-weight="bold">${esc(s.label)}</text>`,
    );
    const gx = x0 + gridLeft;
    const gy = y0 + gridTop;
    const labelsTop = gy - 4 - colLabelH;
    out.push(
      `<text class="axis-title" x="${gx}" y="${fmt(labelsTop - 4 - desc * FONT.axis)}" font-size="${FONT.axis}" fill="#444">${colTitle}</text>`,
    );
    const ry = gy + gridH / 2;
    const rx = x0 + asc * FONT.axis;
    out.push(
      `<text class="axis-title" x="${fmt(rx)}" y="${fmt(ry)}" font-size="${FONT.axis}" fill="#444" text-anchor="middle" transform="rotate(-90 ${fmt(rx)} ${fmt(ry)})">${rowTitle}</text>`,
    );
    cols.forEach((j, k) => {
      const ax = gx + k * CELL + CELL / 2;
      const ay = gy - 4;
      out.push(
        `<text class="col-label" x="${fmt(ax)}" y="${ay}" font-size="${FONT.tick}" transform="rotate(-45 ${fmt(ax)} ${ay})">${esc(tasks[j] as string)}</text>`,
      );
    });
    rows.forEach((T, r) => {
      out.push(
        `<text class="row-label" x="${gx - 6}" y="${fmt(gy + r * CELL + CELL / 2 + 0.35 * FONT.tick)}" font-size="${FONT.tick}" text-anchor="end">${esc(tasks[T] as string)}</text>`,
      );
      cols.forEach((j, k) => {
        const v = s.R[T]?.[j];
        if (v == null) return;
        const x = gx + k * CELL;
        const y = gy + r * CELL;
        out.push(
          `<rect class="cell" x="${x}" y="${y}" width="${CELL - 1}" height="${CELL - 1}" fill="${colour(v)}"><title>${esc(s.label)}: after ${esc(tasks[T] ?? "")}, on ${esc(tasks[j] ?? "")}: ${(100 * v).toFixed(1)}</title></rect>`,
        );
        out.push(
          `<text class="value" x="${fmt(x + (CELL - 1) / 2)}" y="${fmt(y + (CELL - 1) / 2 + 0.35 * FONT.cell)}" font-size="${FONT.cell}" text-anchor="middle" fill="${dark(v) ? "white" : "black"}">${(100 * v).toFixed(1)}</text>`,
        );
      });
    });
    out.push("</g>");
    return out;
  };
  return { w, h, draw };
}

/**
 * An SVG figure: a title, a colour legend with its scale, one heatmap of R per setting (each sized
 * to its content, with axis titles), and a bar chart of the final averages. Text is placed from
 * conservative extents (TEXT_METRICS) so that nothing leaves the canvas or covers a cell.
 */
export function renderSvg(r: BenchmarkReport): string {
  const settings = Object.values(r.settings);
  const values = settings.flatMap((s) => s.R.flat().filter((v): v is number => v != null));
  // the colour and bar scale: 0 … a round number at or above the best score (× 100)
  const top100 = Math.max(1e-6, ...values.map((v) => 100 * v));
  const step = niceStep(top100, 5);
  const scaleMax = Math.ceil(top100 / step - 1e-9) * step;
  const frac = (v: number) => Math.max(0, Math.min(1, (100 * v) / scaleMax));
  const colour = (v: number) => {
    const t = frac(v);
    const mix = (a: number, b: number) => Math.round(a + (b - a) * t);
    return `rgb(${mix(247, 8)},${mix(251, 69)},${mix(255, 148)})`;
  };
  const dark = (v: number) => frac(v) > 0.55;

  // heatmaps, in rows of at most four
  const panels = settings.map((s) => heatmapPanel(s, r.tasks, colour, dark));
  const perRow = 4;
  const panelRows: Panel[][] = [];
  for (let i = 0; i < panels.length; i += perRow) panelRows.push(panels.slice(i, i + perRow));
  const panelsW = Math.max(0, ...panelRows.map((row) => row.reduce((a, p) => a + p.w, 0) + GAP * (row.length - 1)));

  // bar chart geometry
  const barLabelW = Math.max(0, ...settings.map((s) => textWidth(s.label, FONT.bar)));
  const barX = Math.ceil(MARGIN + barLabelW + 8);
  const valueW = textWidth("100.0", FONT.bar) + 6;
  const missing = "not evaluated after every task";

  const width = Math.ceil(
    Math.max(640, MARGIN * 2 + panelsW, barX + 240 + valueW + MARGIN, barX + textWidth(missing, FONT.bar) + MARGIN),
  );
  const inner = width - 2 * MARGIN;
  const parts: string[] = [];
  let y = MARGIN;

  // title and subtitle, wrapped to the canvas
  const title = `Continual retrieval benchmark ${r.name}: ${r.measure} × 100`;
  for (const line of wrapText(title, inner, FONT.title, true)) {
    y += FONT.title;
    parts.push(
      `<text class="title" x="${MARGIN}" y="${y}" font-size="${FONT.title}" font-weight="bold">${esc(line)}</text>`,
    );
    y += Math.ceil(FONT.title * 0.35);
  }
  const subtitle = `Heatmaps: R[T][j], the score on task j (columns) after training on task T (rows), tasks in order ${r.tasks.join(" → ")}. Machine: ${r.machine}; device ${r.device}, ${r.threads} threads.`;
  for (const line of wrapText(subtitle, inner, FONT.subtitle)) {
    y += FONT.subtitle + 2;
    parts.push(
      `<text class="subtitle" x="${MARGIN}" y="${y}" font-size="${FONT.subtitle}" fill="#444">${esc(line)}</text>`,
    );
  }
  y += 12;

  // colour legend: the gradient with its numeric scale
  const legendLabel = `colour: ${r.measure} × 100`;
  const legendX = Math.ceil(MARGIN + textWidth(legendLabel, FONT.legend) + 10);
  const legendW = Math.min(260, width - legendX - MARGIN - textWidth(fmt(scaleMax), FONT.legend) / 2);
  const ticks: number[] = [];
  for (let v = 0; v <= scaleMax + 1e-9; v += step) ticks.push(Number(v.toFixed(6)));
  parts.push(`<g id="legend">`);
  parts.push(
    `<text class="legend-title" x="${MARGIN}" y="${y + 10}" font-size="${FONT.legend}">${esc(legendLabel)}</text>`,
    `<rect class="legend-scale" x="${legendX}" y="${y}" width="${fmt(legendW)}" height="12" fill="url(#scale)" stroke="#888" stroke-width="0.5"/>`,
  );
  for (const v of ticks) {
    const x = legendX + (v / scaleMax) * legendW;
    parts.push(
      `<line x1="${fmt(x)}" y1="${y + 12}" x2="${fmt(x)}" y2="${y + 16}" stroke="#444" stroke-width="0.5"/>`,
      `<text class="legend-tick" x="${fmt(x)}" y="${y + 16 + FONT.legend}" font-size="${FONT.legend}" text-anchor="middle">${fmt(v)}</text>`,
    );
  }
  parts.push("</g>");
  y += 16 + FONT.legend + 4 + 14;

  // heatmaps
  for (const row of panelRows) {
    let x = MARGIN;
    for (const p of row) {
      parts.push(...p.draw(x, y));
      x += p.w + GAP;
    }
    y += Math.max(...row.map((p) => p.h)) + GAP;
  }

  // bar chart of the final averages, on the same scale as the colours
  const barTitle = `Average ${r.measure} × 100 over the tasks after the last task`;
  for (const line of wrapText(barTitle, inner, 13, true)) {
    y += 13;
    parts.push(
      `<text class="chart-title" x="${MARGIN}" y="${y}" font-size="13" font-weight="bold">${esc(line)}</text>`,
    );
    y += 5;
  }
  y += 8;
  const barMax = width - barX - valueW - MARGIN;
  settings.forEach((s) => {
    parts.push(
      `<text class="bar-label" x="${barX - 8}" y="${y + 13}" font-size="${FONT.bar}" text-anchor="end">${esc(s.label)}</text>`,
    );
    if (s.average == null) {
      parts.push(
        `<text class="bar-value" x="${barX}" y="${y + 13}" font-size="${FONT.bar}" fill="#888">${missing}</text>`,
      );
    } else {
      const w = frac(s.average) * barMax;
      parts.push(
        `<rect class="bar" x="${barX}" y="${y}" width="${fmt(w)}" height="18" fill="${colour(s.average)}" stroke="#08306b" stroke-width="0.5"/>`,
        `<text class="bar-value" x="${fmt(barX + w + 5)}" y="${y + 13}" font-size="${FONT.bar}">${(100 * s.average).toFixed(1)}</text>`,
      );
    }
    y += 24;
  });
  // the bars' axis: ticks and title
  parts.push(`<line x1="${barX}" y1="${y}" x2="${fmt(barX + barMax)}" y2="${y}" stroke="#444" stroke-width="0.5"/>`);
  for (const v of ticks) {
    const x = barX + (v / scaleMax) * barMax;
    parts.push(
      `<line x1="${fmt(x)}" y1="${y}" x2="${fmt(x)}" y2="${y + 4}" stroke="#444" stroke-width="0.5"/>`,
      `<text class="axis-tick" x="${fmt(x)}" y="${y + 4 + FONT.tick}" font-size="${FONT.tick}" text-anchor="middle">${fmt(v)}</text>`,
    );
  }
  y += 4 + FONT.tick + 6 + FONT.axis;
  parts.push(
    `<text class="axis-title" x="${fmt(barX + barMax / 2)}" y="${y}" font-size="${FONT.axis}" fill="#444" text-anchor="middle">${esc(`average ${r.measure} × 100`)}</text>`,
  );
  const height = Math.ceil(y + FONT.axis * TEXT_METRICS.descent + MARGIN);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">
<defs><linearGradient id="scale" x1="0" x2="1" y1="0" y2="0"><stop offset="0" stop-color="${colour(0)}"/><stop offset="1" stop-color="${colour(scaleMax / 100)}"/></linearGradient></defs>
<rect width="100%" height="100%" fill="white"/>
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
