/**
 * A lease kept in a JSON file beside a store's data (LanceDB: the store is a directory shared by
 * the processes of one machine). Every read-modify-write of the file runs under a mutex that is a
 * directory (`mkdir` either creates it or fails, atomically, for every process); a mutex left by a
 * process that died inside it is broken once older than `STALE_MS`. The file itself is replaced by
 * a rename, so a reader sees the old or the new holder.
 */
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { checkLease, type Lease } from "./store.js";

/** a mutex older than this was left by a process that died holding it (a holder keeps it for ms) */
const STALE_MS = 10_000;

/**
 * Runs `body` while holding the mutex of `path` (the directory `path.lock`), against every process
 * of this machine doing the same.
 */
export async function withFileMutex<T>(path: string, body: () => Promise<T>): Promise<T> {
  const mutex = `${path}.lock`;
  for (let attempt = 0; ; attempt++) {
    try {
      await mkdir(mutex);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const age = await stat(mutex).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age > STALE_MS) {
        // renamed first: of two processes that found it stale only one moves it (the other's
        // rename fails), so neither removes a mutex the other has just taken
        const aside = `${mutex}.stale-${process.pid}-${Date.now()}`;
        if (
          await rename(mutex, aside).then(
            () => true,
            () => false,
          )
        )
          await rm(aside, { recursive: true, force: true });
      } else if (attempt > 2000)
        throw new Error(`the lease ${path} stays locked by ${mutex}: remove it if no qdc runs`);
      else await new Promise((r) => setTimeout(r, 5));
    }
  }
  try {
    return await body();
  } finally {
    await rm(mutex, { recursive: true, force: true });
  }
}

async function holder(path: string): Promise<Lease | null> {
  try {
    const l = JSON.parse(await readFile(path, "utf8")) as Lease;
    return typeof l.owner === "string" && typeof l.until === "number" ? l : null;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT" || e instanceof SyntaxError) return null;
    throw e;
  }
}

/** Takes or renews the lease in `path` for `owner` (see `VectorStore.lease`). */
export async function takeFileLease(path: string, owner: string, seconds: number, replace?: string): Promise<Lease> {
  checkLease(owner, seconds);
  return withFileMutex(path, async () => {
    const now = Date.now();
    const held = await holder(path);
    if (held && held.owner !== owner && held.owner !== replace && held.until > now) return held;
    const taken = { owner, until: now + seconds * 1000 };
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(taken)}\n`);
    await rename(tmp, path);
    return taken;
  });
}

/** Gives up `owner`'s lease in `path` (a no-op when another owner holds it). */
export async function releaseFileLease(path: string, owner: string): Promise<void> {
  return withFileMutex(path, async () => {
    if ((await holder(path))?.owner === owner) await rm(path, { force: true });
  });
}
