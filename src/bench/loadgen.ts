/**
 * The serve benchmark's clients, in a process of their own (as real clients would be, so that
 * request generation does not share the service's event loop): `concurrency` keep-alive
 * connections each send one search after another. Controlled over IPC: `{start: phase}` begins a
 * measurement window, `{stop: true}` ends it and replies with its latencies and failures.
 */
import http from "node:http";

interface Config {
  base: string;
  concurrency: number;
  texts: string[];
  k: number;
}

export interface LoadWindow {
  phase: string;
  seconds: number;
  latenciesMs: number[];
  failed: number;
  failures: string[];
  /** the service's own time split, summed over successful requests */
  timings: { waitMs: number; embedMs: number; compensateMs: number; storeMs: number; batch: number };
}

if (process.send) {
  let config: Config | null = null;
  let window: (LoadWindow & { t0: number }) | null = null;
  let running = false;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  const once = (body: string) =>
    new Promise<{ status: number; text: string }>((res, rej) => {
      const url = new URL(`${(config as Config).base}/search`);
      const req = http.request(
        {
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: "POST",
          agent,
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        },
        (r) => {
          let text = "";
          r.setEncoding("utf8");
          r.on("data", (d) => {
            text += d;
          });
          r.on("end", () => res({ status: r.statusCode ?? 0, text }));
        },
      );
      req.on("error", rej);
      req.end(body);
    });

  // between measurement windows the clients can be held (no requests at all)
  let paused = false;
  let resume: () => void = () => {};
  let resumed = Promise.resolve();
  const client = async (w: number) => {
    const c = config as Config;
    for (let i = 0; running; i++) {
      while (paused && running) await resumed;
      const text = c.texts[(w * 7919 + i) % c.texts.length] as string;
      const t = performance.now();
      try {
        const r = await once(JSON.stringify({ texts: [text], k: c.k }));
        const ms = performance.now() - t;
        if (!window) continue;
        if (r.status === 200) {
          window.latenciesMs.push(ms);
          const tm = (JSON.parse(r.text) as { timings?: LoadWindow["timings"] }).timings;
          if (tm)
            for (const key of Object.keys(window.timings) as (keyof LoadWindow["timings"])[])
              window.timings[key] += tm[key] ?? 0;
        } else {
          window.failed++;
          if (window.failures.length < 5) window.failures.push(`${r.status}: ${r.text.slice(0, 300)}`);
        }
      } catch (e) {
        if (!window) continue;
        window.failed++;
        if (window.failures.length < 5) window.failures.push((e as Error).message);
      }
    }
  };

  let clients: Promise<void>[] = [];
  // the benchmark process died (a failed run, a kill): no clients left hammering a dead port
  process.on("disconnect", () => process.exit(0));
  process.on(
    "message",
    async (m: { config?: Config; start?: string; stop?: boolean; exit?: boolean; pause?: boolean }) => {
      if (m.pause !== undefined) {
        if (m.pause && !paused) {
          paused = true;
          resumed = new Promise((r) => {
            resume = r;
          });
        } else if (!m.pause && paused) {
          paused = false;
          resume();
        }
      } else if (m.config) {
        config = m.config;
        running = true;
        clients = Array.from({ length: config.concurrency }, (_, w) => client(w));
        process.send?.({ ready: true });
      } else if (m.start !== undefined) {
        window = {
          phase: m.start,
          seconds: 0,
          latenciesMs: [],
          failed: 0,
          failures: [],
          timings: { waitMs: 0, embedMs: 0, compensateMs: 0, storeMs: 0, batch: 0 },
          t0: performance.now(),
        };
      } else if (m.stop && window) {
        const { t0, ...w } = window;
        window = null;
        process.send?.({ window: { ...w, seconds: (performance.now() - t0) / 1000 } });
      } else if (m.exit) {
        running = false;
        paused = false;
        resume();
        await Promise.all(clients);
        agent.destroy();
        process.exit(0);
      }
    },
  );
}
