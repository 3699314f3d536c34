/** Option parsers and option groups the commands share. */
import { type Command, InvalidArgumentError } from "commander";

export const MODELS_HELP =
  "folders searched (recursively) for models named by id: a moved parent, a recorded model (default: QDC_MODELS)";

export function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got '${v}'`);
    return n;
  };
}

/** The options of every command that embeds texts: prompt prefix, token budget, batch size, device. */
export function withEncoding(cmd: Command, prompt: string): Command {
  return cmd
    .option("--prefix <str>", `prepend this instead of the model's ${prompt}`)
    .option("--no-prefix", "prepend nothing")
    .option("--max-length <n>", "tokens per text including special tokens", positiveInt("--max-length"))
    .option("--batch-size <n>", "texts per forward pass", positiveInt("--batch-size"), 64)
    .option("--device <device>", "cpu, cuda or cuda:N", "cpu");
}

/** `--prefix STR` / `--no-prefix` / neither, as EncodeOptions.prefix. */
export function prefixOf(opts: { prefix?: string | boolean }): string | false | undefined {
  return opts.prefix === false ? false : typeof opts.prefix === "string" ? opts.prefix : undefined;
}

export function number(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got '${v}'`);
    return n;
  };
}
/** A share: a number in (0, 1]. */
export function share(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === "" || !(n > 0 && n <= 1)) throw new InvalidArgumentError(`${name} must be in (0, 1], got '${v}'`);
    return n;
  };
}
export function nonNegativeInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0)
      throw new InvalidArgumentError(`${name} must be a non-negative integer, got '${v}'`);
    return n;
  };
}
