/**
 * The HTTP API (fastify, JSON schemas at the edge):
 *   POST /search {texts, k?, filter?}  → per text the hits (id, score, version), the model version
 *                                        used and the compensation applied per store version
 *   GET  /health, GET /models
 *   POST /admin/upgrade {model}         (bearer token) load a descendant model and switch to it
 *   POST /admin/reindex {action}        (bearer token) start | pause | resume | status
 * Bad requests get a 4xx with a JSON {error, message}; the service keeps serving.
 */
import { timingSafeEqual } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { lineageOf } from "../index/lineage.js";
import { FilterError } from "../store/store.js";
import type { Reindexer } from "./reindex.js";
import type { SearchService } from "./service.js";

export interface HttpOptions {
  /** bearer token of the admin endpoints (none: they answer 403) */
  token?: string;
  /** most texts per search request (default 64) and characters per text (default 4,096) */
  maxTexts?: number;
  maxChars?: number;
  maxK?: number;
  logger?: boolean;
  /** where 5xx causes go (default: the service's log, JSON lines on stderr) */
  onServerError?: (e: { method: string; url: string; status: number; message: string; stack?: string }) => void;
}

class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

export function buildApp(service: SearchService, reindexer: Reindexer, opts: HttpOptions = {}): FastifyInstance {
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: 4 * 1024 * 1024,
    // reject what the schemas do not allow instead of dropping or coercing it
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
  });
  const maxTexts = opts.maxTexts ?? 64;
  const maxChars = opts.maxChars ?? 4096;
  const maxK = opts.maxK ?? 1000;

  const serverError =
    opts.onServerError ??
    ((e: Record<string, unknown>) => service.log({ level: "error", event: "request-failed", ...e }));
  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, req, reply) => {
    if (err.validation) return reply.code(400).send({ error: "bad_request", message: err.message });
    if (err instanceof FilterError) return reply.code(400).send({ error: "bad_filter", message: err.message });
    if (err instanceof HttpError)
      return reply
        .code(err.statusCode)
        .send({ error: err.statusCode === 401 ? "unauthorized" : "bad_request", message: err.message });
    const code = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (code >= 500)
      serverError({ method: req.method, url: req.url, status: code, message: err.message, stack: err.stack });
    return reply.code(code).send({ error: code === 500 ? "internal" : "bad_request", message: err.message });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: "not_found", message: `no route ${req.method} ${req.url}` }),
  );

  const admin = async (req: FastifyRequest, _reply: FastifyReply) => {
    if (!opts.token)
      throw new HttpError(
        403,
        "admin endpoints are disabled: start the service with a token (--token or QDC_ADMIN_TOKEN)",
      );
    const got = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "";
    const a = Buffer.from(got);
    const b = Buffer.from(opts.token);
    if (a.length !== b.length || !timingSafeEqual(a, b)) throw new HttpError(401, "missing or wrong bearer token");
  };

  app.post(
    "/search",
    {
      schema: {
        body: {
          type: "object",
          required: ["texts"],
          additionalProperties: false,
          properties: {
            texts: {
              type: "array",
              minItems: 1,
              maxItems: maxTexts,
              items: { type: "string", minLength: 1, maxLength: maxChars, pattern: "\\S" },
            },
            k: { type: "integer", minimum: 1, maximum: maxK, default: 10 },
            filter: { type: "object", additionalProperties: { anyOf: [{ type: "string" }, { type: "number" }] } },
          },
        },
      },
    },
    async (req) => {
      const body = req.body as { texts: string[]; k: number; filter?: Record<string, string | number> };
      const r = await service.search(body.texts, body.k, body.filter);
      return {
        model: r.model,
        versions: r.versions,
        results: r.results.map((hits) =>
          hits.map((h) => ({
            id: h.id,
            score: h.score,
            version: h.version,
            ...(Object.keys(h.fields).length ? { fields: h.fields } : {}),
          })),
        ),
        timings: r.timings,
      };
    },
  );

  app.get("/health", async () => {
    const problems = service.problems;
    return {
      status: problems.length ? "degraded" : "ok",
      model: service.model.version,
      store: service.store.kind,
      rows: await service.store.count(),
      ...(problems.length ? { problems } : {}),
    };
  });

  app.get("/models", async () => ({
    current: service.model.version,
    lineage: lineageOf(service.model.version),
    compensation: service.model.compensation,
    store: { kind: service.store.kind, indexed: service.store.indexed, versions: await service.versions() },
    reindex: reindexer.status,
  }));

  app.post(
    "/admin/upgrade",
    {
      preHandler: admin,
      schema: {
        body: {
          type: "object",
          required: ["model"],
          additionalProperties: false,
          properties: { model: { type: "string", minLength: 1 } },
        },
      },
    },
    async (req) => {
      try {
        return await service.upgrade((req.body as { model: string }).model);
      } catch (e) {
        throw new HttpError(400, `cannot upgrade: ${(e as Error).message}`);
      }
    },
  );

  app.post(
    "/admin/reindex",
    {
      preHandler: admin,
      schema: {
        body: {
          type: "object",
          required: ["action"],
          additionalProperties: false,
          properties: { action: { enum: ["start", "pause", "resume", "status"] } },
        },
      },
    },
    async (req) => {
      const action = (req.body as { action: "start" | "pause" | "resume" | "status" }).action;
      return action === "status" ? reindexer.status : reindexer[action]();
    },
  );

  return app;
}
