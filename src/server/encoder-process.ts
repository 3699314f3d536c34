/** The child side of `ProcessEncoder`: an `EncoderCore` answering calls over IPC, one at a time. */
import { EncoderCore } from "./encoder.js";

const core = new EncoderCore();
type Call = { id: number; op: "load" | "check" | "queries" | "documents" | "unload"; args: unknown[] };

process.on("message", (m: Call) => {
  let reply: unknown;
  try {
    const fn = core[m.op] as (...a: unknown[]) => unknown;
    reply = { id: m.id, ok: true, value: fn.apply(core, m.args) ?? null };
  } catch (e) {
    reply = { id: m.id, ok: false, error: e instanceof Error ? e.message : String(e) };
  }
  process.send?.(reply);
});
// the parent went away: nothing left to serve
process.on("disconnect", () => {
  core.close();
  process.exit(0);
});
