/**
 * Data-parallel training on c10d/Gloo: two ranks on this CPU against one process on the same
 * global batch (losses, gradient norms and final weights within 1e-5), ranks joining from the
 * standard environment, a rank killed mid-run (the other stops with a clear error, no hang) and
 * `--resume` going on from the last checkpoint.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadSafetensors } from "../src/index.js";
import { distributedAvailable } from "../src/tensor/index.js";
import { freePort, rankFromEnv, withoutOption } from "../src/train/distributed.js";
import { assertClose, FIXTURES } from "./helpers.js";

const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
/** Debian's PyTorch (python3-torch), for a launcher's store: optional */
const pyTorch = spawnSync("/usr/bin/python3", ["-c", "import torch.distributed"], { stdio: "ignore" }).status === 0;
const tmp = () => mkdtempSync(join(tmpdir(), "qdc-ddp-"));
const fixture = join(FIXTURES, "train-step");

/** bert-tiny (no dropout) on the six fixture rows, 4 queries × (1 + 1) documents a step, with distillation. */
const recipe = (out: string, extra: string[] = []) => [
  "train",
  "--data",
  join(fixture, "train.jsonl"),
  "--init",
  join(FIXTURES, "bert-tiny"),
  "--out",
  out,
  "--batch-size",
  "4",
  "--negatives",
  "1",
  "--lr",
  "1e-3",
  "--warmup",
  "1",
  "--steps",
  "6",
  "--kd-query",
  "1",
  "--kd-doc",
  "0.5",
  "--no-prefix",
  "--seed",
  "3",
  "--max-length",
  "32",
  ...extra,
];

const run = (args: string[], env: Record<string, string> = {}) => {
  const r = spawnSync("node", [cli, ...args], {
    encoding: "utf8",
    env: { ...process.env, QDC_THREADS: "1", ...env },
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return r;
};

const log = (dir: string) =>
  readFileSync(join(dir, "train.log.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, number>);

/** `qdc …args` as rank `rank` of 2, started as a cluster launcher would (the environment). */
function rankProcess(rank: number, port: number, args: string[], env: Record<string, string> = {}) {
  const child = spawn("node", [cli, ...args], {
    env: {
      ...process.env,
      QDC_THREADS: "1",
      WORLD_SIZE: "2",
      RANK: String(rank),
      MASTER_ADDR: "127.0.0.1",
      MASTER_PORT: String(port),
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: string | null; err: string }>((res) =>
    child.once("exit", (code, signal) => res({ code, signal, err })),
  );
  return { child, exited };
}

/** The two runs' per-step losses and gradient norms, and their final weights, within 1e-5. */
function assertSameRun(got: string, want: string) {
  const [a, b] = [log(got), log(want)];
  assert.equal(a.length, b.length);
  a.forEach((g, i) => {
    for (const k of ["loss", "infonce", "kd_query", "kd_doc", "grad_norm", "logit_scale"])
      assertClose([g[k]!], [b[i]![k]!], 1e-5, 1e-6, `${k} at step ${i}`);
  });
  const wa = loadSafetensors(join(got, "model.safetensors"));
  const wb = loadSafetensors(join(want, "model.safetensors"));
  assert.equal(wa.size, wb.size);
  for (const [name, w] of wb) assertClose(wa.get(name)!.toArray(), w.toArray(), 1e-5, 1e-6, name);
}

describe("data-parallel ranks from the environment", () => {
  it("are read from WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, with errors naming the variable", () => {
    assert.equal(rankFromEnv({}), null);
    assert.equal(rankFromEnv({ WORLD_SIZE: "1" }), null);
    assert.deepEqual(rankFromEnv({ WORLD_SIZE: "4", RANK: "3", MASTER_ADDR: "node7", MASTER_PORT: "29500" }), {
      rank: 3,
      world: 4,
      localRank: 3,
      masterAddr: "node7",
      masterPort: 29500,
    });
    assert.equal(
      rankFromEnv({ WORLD_SIZE: "4", RANK: "3", LOCAL_RANK: "1", MASTER_ADDR: "a", MASTER_PORT: "1" })?.localRank,
      1,
    );
    assert.throws(
      () => rankFromEnv({ WORLD_SIZE: "2", RANK: "2", MASTER_ADDR: "a", MASTER_PORT: "1" }),
      /RANK must be an integer from 0 to 1/,
    );
    assert.throws(() => rankFromEnv({ WORLD_SIZE: "two" }), /WORLD_SIZE must be an integer/);
    assert.throws(
      () => rankFromEnv({ WORLD_SIZE: "2", RANK: "0", MASTER_PORT: "1" }),
      /MASTER_ADDR must name the host/,
    );
    assert.throws(
      () => rankFromEnv({ WORLD_SIZE: "2", RANK: "0", MASTER_ADDR: "a", MASTER_PORT: "70000" }),
      /MASTER_PORT must be an integer from 1 to 65535/,
    );
    assert.deepEqual(withoutOption(["train", "--nproc", "2", "--steps", "3", "--nproc=4"], "--nproc"), [
      "train",
      "--steps",
      "3",
    ]);
  });
});

describe("data-parallel training (2 Gloo ranks on this CPU)", {
  skip: distributedAvailable() ? false : "the addon was built without c10d/Gloo",
}, () => {
  it("equals one process on the same global batch: losses, gradient norms and final weights within 1e-5", () => {
    const one = tmp();
    const two = tmp();
    run(recipe(one));
    const r = run([...recipe(two), "--nproc", "2"]);
    assert.match(r.stderr, /launching 2 ranks/);
    assert.match(r.stderr, /trained 6 steps on 2 ranks/);
    assert.equal((r.stderr.match(/trained 6 steps/g) ?? []).length, 1, "rank 0 alone reports");
    assertSameRun(two, one);
  });

  it("keeps GradCache and a learned logit scale exact per rank", () => {
    const one = tmp();
    const two = tmp();
    const extra = ["--grad-cache", "1", "--trainable-scale"];
    run(recipe(one, extra));
    run([...recipe(two, extra), "--nproc", "2"]);
    assertSameRun(two, one);
    assert.notEqual(log(two).at(-1)?.logit_scale, 50, "the scale moved");
  });

  it("refuses ranks that do not see the same output folder (they would train apart)", async () => {
    const trained = tmp();
    run([...recipe(trained), "--checkpoint-every", "3"]);
    const fresh = tmp();
    const port = await freePort();
    const ranks = [fresh, trained].map((out, rank) => rankProcess(rank, port, [...recipe(out), "--resume"]).exited);
    for (const r of await Promise.all(ranks)) {
      assert.notEqual(r.code, 0);
      assert.match(r.err, /the ranks disagree on where training starts .*rank 0 has 0, 0, .*rank 1 has 6, /);
    }
  });

  it("runs a continual run (--config) on two ranks as one process does: models and compensators", () => {
    const config = (dir: string) => {
      const file = join(dir, "run.yaml");
      writeFileSync(
        file,
        [
          "run: demo",
          "out: runs",
          `init: ${join(FIXTURES, "bert-tiny")}`,
          "defaults: { batch_size: 4, lr: 0.001, warmup: 1, kd: true, max_length: 32, negatives: 1, prefix: false }",
          "drift: { methods: [mean], queries: 50 }",
          "tasks:",
          `  - { name: first, data: [${join(fixture, "train.jsonl")}], steps: 2 }`,
          `  - { name: second, data: [${join(fixture, "train.jsonl")}], steps: 3, seed: 5 }`,
        ].join("\n"),
      );
      return file;
    };
    const [one, two] = [tmp(), tmp()];
    run(["train", "--config", config(one)]);
    const r = run(["train", "--config", config(two), "--nproc", "2"]);
    assert.equal((r.stderr.match(/run finished/g) ?? []).length, 1, "rank 0 alone reports");
    for (const task of ["first", "second"]) {
      const [a, b] = [one, two].map((d) => join(d, "runs", "demo", task));
      assertSameRun(b!, a!);
      const [ca, cb] = [a, b].map((d) => loadSafetensors(join(d!, "drift", "mean.safetensors")));
      for (const [name, w] of ca!) assertClose(cb!.get(name)!.toArray(), w.toArray(), 1e-5, 1e-6, `${task} ${name}`);
    }
    // rerun: both ranks find every task done
    const again = run(["train", "--config", config(two), "--nproc", "2"]);
    assert.equal((again.stderr.match(/done earlier, skipped/g) ?? []).length, 2);
  });

  it("refuses a micro-batch the ranks cannot share", () => {
    const r = spawnSync("node", [cli, ...recipe(tmp(), ["--batch-size", "3"]), "--nproc", "2"], {
      encoding: "utf8",
      env: { ...process.env, QDC_THREADS: "1" },
      timeout: 60_000,
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /3 queries per micro-batch cannot be shared by 2 ranks/);
  });

  it("a rank killed mid-run stops the other with a clear error (no hang); --resume goes on from the last checkpoint", async () => {
    const whole = tmp();
    run(recipe(whole));
    const out = tmp();
    const port = await freePort();
    const args = [...recipe(out), "--checkpoint-every", "2"];
    // two ranks started as a cluster launcher would (the environment), rank 1 killed after step 3
    const ranks = [0, 1].map((rank) => rankProcess(rank, port, args, { QDC_TEST_KILL_RANK_AFTER_STEP: "1:3" }));
    const timer = setTimeout(() => {
      for (const r of ranks) r.child.kill("SIGKILL");
    }, 90_000);
    const [r0, r1] = await Promise.all(ranks.map((r) => r.exited));
    clearTimeout(timer);
    assert.equal(r1!.signal, "SIGKILL");
    assert.equal(r0!.signal, null, "rank 0 ended by itself, not by the test's timeout");
    assert.notEqual(r0!.code, 0);
    assert.match(r0!.err, /of rank 0 of 2 failed: another rank died or could not be reached in time/);
    const state = JSON.parse(readFileSync(join(out, "checkpoint", "state.json"), "utf8"));
    assert.equal(state.step, 4, "the last checkpoint: after step 3");
    const resumed = run([...args, "--nproc", "2", "--resume"]);
    assert.match(resumed.stderr, /resumed at step 4/);
    assert.deepEqual(
      log(out).map((e) => e.step),
      [0, 1, 2, 3, 4, 5],
    );
    assertSameRun(out, whole);
  });
  it("joins a store a launcher serves (torchrun's agent store), as ranks of a torchrun job do", {
    skip: pyTorch ? false : "no PyTorch for /usr/bin/python3 (Debian: python3-torch)",
  }, async () => {
    const one = tmp();
    const two = tmp();
    run(recipe(one));
    const port = await freePort();
    // the launcher's store serves MASTER_PORT; both ranks are its clients
    const agent = [
      "import datetime, os, subprocess, sys",
      "import torch.distributed as dist",
      `store = dist.TCPStore("127.0.0.1", ${port}, 3, True, datetime.timedelta(seconds=60))`,
      "args = sys.argv[1:]",
      "env = lambda r: {**os.environ, 'QDC_THREADS': '1', 'RANK': str(r), 'LOCAL_RANK': str(r), 'WORLD_SIZE': '2', 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': '" +
        port +
        "', 'TORCHELASTIC_USE_AGENT_STORE': 'True', 'TORCHELASTIC_RESTART_COUNT': '0'}",
      "procs = [subprocess.Popen(args, env=env(r)) for r in range(2)]",
      "sys.exit(max(p.wait() for p in procs))",
    ].join("\n");
    const r = spawnSync("/usr/bin/python3", ["-c", agent, "node", cli, ...recipe(two)], {
      encoding: "utf8",
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assertSameRun(two, one);
  });
});
