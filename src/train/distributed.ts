/**
 * Data-parallel training, the process side. A rank joins the group that the standard environment
 * describes — MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, as torchrun and cluster
 * schedulers set them — so one command works on one machine and on several; `launchRanks` starts
 * N local ranks of a command (torchrun's --nproc-per-node) and ends them all when one fails.
 * The collectives themselves are c10d's (Gloo) in the addon (`tensor/distributed.ts`).
 */
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { availableParallelism } from "node:os";
import { allGather, distributedAvailable, initProcessGroup, processGroup, tensor, tidy } from "../tensor/index.js";

export interface RankEnv {
  rank: number;
  world: number;
  localRank: number;
  masterAddr: string;
  masterPort: number;
}

function intVar(env: NodeJS.ProcessEnv, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  const n = Number(raw);
  if (raw === undefined || raw.trim() === "" || !Number.isInteger(n) || n < min || n > max)
    throw new Error(
      `${name} must be an integer from ${min} to ${max} for a data-parallel rank (WORLD_SIZE is set), got '${raw ?? ""}'`,
    );
  return n;
}

/** The rank this process is, from the environment (null when WORLD_SIZE is unset or 1). */
export function rankFromEnv(env: NodeJS.ProcessEnv = process.env): RankEnv | null {
  if (env.WORLD_SIZE === undefined || env.WORLD_SIZE === "") return null;
  const world = intVar(env, "WORLD_SIZE", 1);
  if (world === 1) return null;
  const rank = intVar(env, "RANK", 0, world - 1);
  const localRank = env.LOCAL_RANK === undefined ? rank : intVar(env, "LOCAL_RANK", 0);
  const masterAddr = env.MASTER_ADDR?.trim();
  if (!masterAddr)
    throw new Error("MASTER_ADDR must name the host of rank 0 for a data-parallel rank (WORLD_SIZE is set)");
  return { rank, world, localRank, masterAddr, masterPort: intVar(env, "MASTER_PORT", 1, 65535) };
}

/**
 * Joins the group the environment describes (once per process; later calls return it): rank 0
 * serves the rendezvous, unless torchrun's agent does (TORCHELASTIC_USE_AGENT_STORE). Collectives wait QDC_DIST_TIMEOUT seconds (default 1800) for the others.
 */
export function joinGroupFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): { rank: number; world: number; localRank: number } | null {
  const joined = processGroup();
  if (joined) return { ...joined, localRank };
  const r = rankFromEnv(env);
  if (!r) return null;
  localRank = r.localRank;
  if (!distributedAvailable())
    throw new Error(
      "WORLD_SIZE is set, but this qdc addon was built without c10d/Gloo: install Gloo's headers (Debian: apt-get install libgloo-dev) and run `npm run build:native`",
    );
  const timeout = env.QDC_DIST_TIMEOUT === undefined ? 1800 : Number(env.QDC_DIST_TIMEOUT);
  if (!(timeout > 0)) throw new Error(`QDC_DIST_TIMEOUT must be seconds > 0, got '${env.QDC_DIST_TIMEOUT}'`);
  initProcessGroup({
    rank: r.rank,
    world: r.world,
    masterAddr: r.masterAddr,
    masterPort: r.masterPort,
    timeoutMs: Math.round(timeout * 1000),
    // torchrun's agent serves its store at MASTER_ADDR:MASTER_PORT and says so; a restart of the
    // workers (TORCHELASTIC_RESTART_COUNT) meets under keys of its own
    serve: env.TORCHELASTIC_USE_AGENT_STORE !== "True",
    prefix: `qdc/${env.TORCHELASTIC_RESTART_COUNT ?? "0"}/`,
  });
  const g = processGroup();
  return g ? { ...g, localRank } : null;
}

let localRank = 0;

/**
 * Fails on every rank unless all ranks hold the same `values` (where training starts, the
 * starting weights' sum, whether a task is done): ranks that do not see the same output folder
 * (shared storage) or data would otherwise train apart while their collectives still line up.
 */
export function agreeAcrossRanks(values: number[], what: string): void {
  const g = processGroup();
  if (!g) return;
  const all = tidy(() => allGather(tensor(values, { dtype: "float64" })).data()) as Float64Array;
  const n = values.length;
  const of = (r: number) => Array.from(all.subarray(r * n, (r + 1) * n));
  for (let r = 1; r < g.world; r++)
    if (of(r).some((v, i) => v !== of(0)[i]))
      throw new Error(
        `the ranks disagree on ${what}: rank 0 has ${of(0).join(", ")}, rank ${r} has ${of(r).join(", ")}; every rank must see the same output folder (shared storage), model and data`,
      );
}

/** `args` without the option `name` and its value (`--name v` or `--name=v`). */
export function withoutOption(args: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === name) i++;
    else if (!a.startsWith(`${name}=`)) out.push(a);
  }
  return out;
}

/** A TCP port free on 127.0.0.1 now (for a local rendezvous). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Runs `args` (a qdc command line) as `nproc` local ranks of one group: each gets RANK, LOCAL_RANK,
 * WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT, and its share of the cores as libtorch
 * threads (QDC_THREADS, unless set). When a rank fails, the others are ended (SIGTERM, then SIGKILL
 * after 10 s) and its exit code is returned; 0 when every rank succeeded.
 */
export async function launchRanks(
  nproc: number,
  args: string[],
  opts: { script?: string; threads?: number; log?: (m: string) => void } = {},
): Promise<number> {
  if (!Number.isInteger(nproc) || nproc < 1) throw new Error(`--nproc must be a positive integer, got ${nproc}`);
  const log = opts.log ?? ((m: string) => console.error(m));
  const script = opts.script ?? process.argv[1];
  if (!script) throw new Error("launchRanks: no script to run");
  const port = await freePort();
  const threads = opts.threads ?? Math.max(1, Math.floor(availableParallelism() / nproc));
  log(`launching ${nproc} ranks (rendezvous 127.0.0.1:${port}, ${threads} thread(s) each)`);
  const children = Array.from({ length: nproc }, (_, rank) =>
    spawn(process.execPath, [...process.execArgv, script, ...args], {
      stdio: "inherit",
      env: {
        ...process.env,
        QDC_THREADS: process.env.QDC_THREADS ?? String(threads),
        MASTER_ADDR: "127.0.0.1",
        MASTER_PORT: String(port),
        WORLD_SIZE: String(nproc),
        RANK: String(rank),
        LOCAL_RANK: String(rank),
      },
    }),
  );
  let failed: number | null = null;
  const endAll = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
    setTimeout(() => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    }, 10_000).unref();
  };
  const forward = (signal: NodeJS.Signals) => () => {
    for (const c of children) c.kill(signal);
  };
  const onInt = forward("SIGINT");
  const onTerm = forward("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  try {
    await Promise.all(
      children.map(
        (c, rank) =>
          new Promise<void>((resolve) => {
            c.once("error", (e) => {
              if (failed === null) {
                failed = 1;
                log(`rank ${rank} could not be started (${e.message}): ending the others`);
                endAll();
              }
              resolve();
            });
            c.once("exit", (code, signal) => {
              if ((code !== 0 || signal) && failed === null) {
                failed = code && code !== 0 ? code : 1;
                log(
                  `rank ${rank} ${signal ? `was killed (${signal})` : `exited with code ${code}`}: ending the others`,
                );
                endAll();
              }
              resolve();
            });
          }),
      ),
    );
  } finally {
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onTerm);
  }
  return failed ?? 0;
}
