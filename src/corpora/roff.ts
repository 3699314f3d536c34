/** Plain text from man(7) roff source: enough of the language for NAME and DESCRIPTION sections. */

const NAMED: Record<string, string> = {
  aq: "'",
  dq: '"',
  em: "—",
  en: "–",
  hy: "-",
  bu: "•",
  co: "©",
  rg: "®",
  lq: '"',
  rq: '"',
  oq: "'",
  cq: "'",
  "<=": "<=",
  ">=": ">=",
  mu: "×",
  ti: "~",
  ha: "^",
  rs: "\\",
  ga: "`",
  ul: "_",
  dg: "†",
};

/** Inline escapes: fonts, special characters, hyphens, zero-width marks. */
export function unescapeRoff(s: string): string {
  return s
    .replace(/\\f(\[[^\]]*\]|\(..|.)/g, "")
    .replace(/\\\[([^\]]+)\]/g, (_, n: string) => NAMED[n] ?? "")
    .replace(/\\\((..)/g, (_, n: string) => NAMED[n] ?? "")
    .replace(/\\\*(\[[^\]]*\]|\(..|.)/g, "")
    .replace(/\\[sS][+-]?\d/g, "")
    .replace(/\\\$\d/g, "")
    .replace(/\\e/g, "\\")
    .replace(/\\-/g, "-")
    .replace(/\\[ ~0]/g, " ")
    .replace(/\\[&|^%:,/]/g, "")
    .replace(/\\c$/g, "")
    .replace(/\\"/g, "");
}

const FONT_MACROS = new Set(["B", "I", "BR", "BI", "IB", "IR", "RB", "RI", "SM", "SB", "UR", "MT"]);

/** Splits macro arguments, honouring double quotes. */
function args(rest: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"]|"")*)"|(\S+)/g;
  for (let m = re.exec(rest); m; m = re.exec(rest)) out.push((m[1] ?? m[2] ?? "").replace(/""/g, '"'));
  return out;
}

/** The sections of a page: name (upper case) → text. */
export function roffSections(source: string): Map<string, string> {
  const sections = new Map<string, string[]>();
  let current: string[] | null = null;
  let inDefinition = false;
  for (const raw of source.split("\n")) {
    const line = raw.replace(/\s+$/, "");
    // macro definitions (.de NAME … ..) are code, not text
    if (/^[.']\s*(de|am|ig)\b/.test(line)) {
      inDefinition = true;
      continue;
    }
    if (inDefinition) {
      if (/^\.\.\s*$/.test(line)) inDefinition = false;
      continue;
    }
    if (/^[.']\s*\\"/.test(line) || line.startsWith('\\"')) continue; // comment
    const macro = /^[.']\s*(\S+)\s*(.*)$/.exec(line);
    if (macro) {
      const [, name, rest] = macro as unknown as [string, string, string];
      if (name === "SH") {
        const title = unescapeRoff(args(rest).join(" ")).toUpperCase().trim();
        current = [];
        sections.set(title, current);
        continue;
      }
      if (!current) continue;
      if (FONT_MACROS.has(name)) current.push(unescapeRoff(args(rest).join(name.length === 2 ? "" : " ")));
      else if (name === "IP" || name === "TP" || name === "SS") {
        const a = args(rest);
        if (name !== "TP" && a[0]) current.push(unescapeRoff(a[0]));
        current.push("\n");
      } else current.push("\n"); // .PP, .nf, .RS … : a break
      continue;
    }
    current?.push(unescapeRoff(line));
  }
  const out = new Map<string, string>();
  for (const [k, v] of sections)
    out.set(
      k,
      v
        .join(" ")
        .replace(/[ \t]*\n[ \t\n]*/g, "\n")
        .replace(/[ \t]+/g, " ")
        .trim(),
    );
  return out;
}
