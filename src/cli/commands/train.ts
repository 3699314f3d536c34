/** `qdc train`: one task by flags, or a continual run from a YAML file. */
import { type Command, Option } from "commander";
import { nonNegativeInt, number, positiveInt } from "../options.js";

/** Test hook: QDC_TEST_KILL_RANK_AFTER_STEP=R:S makes rank R SIGKILL itself once step S is done. */
function killHook(rank: number): ((e: { step: number }) => void) | undefined {
  const m = /^(\d+):(\d+)$/.exec(process.env.QDC_TEST_KILL_RANK_AFTER_STEP ?? "");
  if (!m || Number(m[1]) !== rank) return undefined;
  return (e) => {
    if (e.step >= Number(m[2])) process.kill(process.pid, "SIGKILL");
  };
}

export function register(program: Command): void {
  program
    .command("train")
    .description(
      "fine-tune an embedding model contrastively (InfoNCE + optional embedding distillation); resumable.\n" +
        "Either --config run.yaml (the continual runner: tasks in order) or the flags for one task.",
    )
    .option("--config <file>", "YAML run file: tasks in order, each from the previous task's model")
    .option("--data <files...>", "training rows: JSONL or JSONL.gz {query, document, negatives}")
    .option("--beir <dir>", "train on a BEIR folder's qrels pairs instead of --data")
    .option("--split <name>", "BEIR split for --beir", "train")
    .option("--init <dir>", "starting model directory")
    .option("--out <dir>", "trained model directory (with train.log.jsonl and checkpoint/)")
    .option("--batch-size <n>", "queries per step", positiveInt("--batch-size"), 32)
    .option(
      "--negatives <k>",
      "hard negatives per query (default: the fewest any training row carries)",
      nonNegativeInt("--negatives"),
    )
    .option("--lr <x>", "peak learning rate", number("--lr"), 2e-5)
    .option("--warmup <n>", "warm-up steps", nonNegativeInt("--warmup"), 0)
    .option("--steps <n>", "optimiser steps", positiveInt("--steps"))
    .option(
      "--weight-decay <x>",
      "AdamW weight decay (not on biases and 1-d parameters)",
      number("--weight-decay"),
      0.01,
    )
    .option("--kd-query <w>", "weight of query embedding distillation (0: off)", number("--kd-query"), 0)
    .option("--kd-doc <w>", "weight of document embedding distillation (0: off)", number("--kd-doc"), 0)
    .option("--logit-scale <s>", "InfoNCE logit scale", number("--logit-scale"), 50)
    .option("--trainable-scale", "learn the logit scale (starting from --logit-scale)")
    .option(
      "--grad-cache <n>",
      "GradCache: embed at most n texts per forward pass (exact loss, bounded memory)",
      positiveInt("--grad-cache"),
    )
    .addOption(
      new Option("--precision <p>", "bf16 compute with float32 master weights, or fp32 (auto: bf16 on CUDA)")
        .choices(["auto", "bf16", "fp32"])
        .default("auto"),
    )
    .option("--bidirectional", "add the document→query InfoNCE term")
    .option("--clip <x>", "gradient-norm clipping (0: off)", number("--clip"), 1.0)
    .option("--accumulation <n>", "micro-batches per step", positiveInt("--accumulation"), 1)
    .option("--no-shuffle", "read rows in file order")
    .option("--no-prefix", "do not prepend the model's query/document prompts")
    .option("--seed <n>", "random seed", nonNegativeInt("--seed"), 0)
    .option("--max-length <n>", "tokens per text", positiveInt("--max-length"), 128)
    .option("--checkpoint-every <n>", "steps between checkpoints", positiveInt("--checkpoint-every"))
    .option("--resume", "continue from the checkpoint in --out")
    .option("--device <device>", "cpu, cuda or cuda:N", "cpu")
    .option(
      "--nproc <n>",
      "data parallel: n local ranks of this command (c10d/Gloo), the cores shared between them; a rank started by a launcher (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT set) joins its group without it",
      positiveInt("--nproc"),
    )
    .action(async (opts) => {
      const { joinGroupFromEnv, launchRanks, withoutOption } = await import("../../train/distributed.js");
      if (opts.nproc > 1 && !process.env.WORLD_SIZE) {
        const code = await launchRanks(opts.nproc, withoutOption(process.argv.slice(2), "--nproc"));
        if (code !== 0)
          throw new Error(
            `train: a rank failed (exit code ${code}); rerun with --resume to go on from the last checkpoint`,
          );
        return;
      }
      const group = joinGroupFromEnv();
      const lead = (group?.rank ?? 0) === 0;
      if (opts.config) {
        const { readRunConfig, runContinual } = await import("../../train/continual.js");
        const { driftAfterTask } = await import("../../drift/task-drift.js");
        const config = readRunConfig(opts.config);
        const log = (m: string) => {
          if (lead) console.error(m);
        };
        const dirs = await runContinual(config, {
          progress: process.stderr.isTTY === true,
          log,
          afterTask: driftAfterTask(config.drift, { device: config.device, log }),
        });
        log(`run finished: ${dirs.join(", ")}`);
        return;
      }
      const missing = ["init", "out", "steps"].filter((k) => opts[k] === undefined);
      if (!opts.data && !opts.beir) missing.unshift("data (or --beir)");
      if (missing.length)
        throw new Error(`train: give --config, or the flags ${missing.map((m) => `--${m}`).join(", ")}`);
      const { train } = await import("../../train/trainer.js");
      const data = opts.beir ? { beir: opts.beir, split: opts.split } : opts.data;
      if (opts.negatives === undefined) {
        const { RowStream } = await import("../../data/pairs.js");
        opts.negatives = await new RowStream(data).negativesCarried();
        if (lead)
          console.error(
            `train: ${opts.negatives} hard negative(s) per query (the fewest any row carries; --negatives to choose)`,
          );
      }
      const r = await train({
        data,
        init: opts.init,
        out: opts.out,
        batchSize: opts.batchSize,
        negatives: opts.negatives,
        lr: opts.lr,
        warmup: opts.warmup,
        steps: opts.steps,
        weightDecay: opts.weightDecay,
        kdQuery: opts.kdQuery,
        kdDoc: opts.kdDoc,
        logitScale: opts.logitScale,
        trainableScale: opts.trainableScale ?? false,
        gradCacheChunk: opts.gradCache,
        precision: opts.precision,
        bidirectional: opts.bidirectional ?? false,
        clip: opts.clip,
        accumulation: opts.accumulation,
        shuffle: opts.shuffle,
        prefix: opts.prefix,
        seed: opts.seed,
        maxLength: opts.maxLength,
        checkpointEvery: opts.checkpointEvery,
        resume: opts.resume ?? false,
        device: opts.device,
        progress: process.stderr.isTTY === true,
        onStep: killHook(group?.rank ?? 0),
      });
      if (lead)
        console.error(
          `trained ${r.steps} steps${r.resumedFrom ? ` (resumed at step ${r.resumedFrom})` : ""}${group ? ` on ${group.world} ranks` : ""} → ${opts.out}`,
        );
    });
}
