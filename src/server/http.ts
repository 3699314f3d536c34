/**
 * The HTTP API (fastify, JSON schemas at the edge):
 *   POST /search {texts, k?, filter?}  → per text the hits (id, score, version), the model used and
 *                                        the compensation applied per store version
 *   GET  /health, GET /models
 *   POST /admin/upgrade {model}         (bearer token) load a descendant model and switch to it
 *   POST /admin/rollback                (bearer token) switch back to the model served before it
 *   POST /admin/reindex {action}        (bearer token) start | pause | resume | status
 *
 * Every error is a JSON {error, message}: `error` a stable code (the README's table), `message`
 * what is wrong — the field or the position in the body, what was expected and what came. Model
 * versions are content ids (`modelName` names a path version of earlier releases by its
 * directory's name and a hash of the path), and every other absolute path in a message is cut to
 * its last component, so no machine path leaves the service. Admin requests are authenticated
 * before their body is read.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { basename, resolve } from "node:path";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import { isModelId, lineageOf } from "../lineage/index.js";
import { FilterError } from "../store/store.js";
import type { Reindexer, ReindexStatus } from "./reindex.js";
import { NothingToRollBack, type SearchService } from "./service.js";

export interface HttpOptions {
  /** bearer token of the admin endpoints (none: they answer 403 admin_disabled) */
  token?: string;
  /** most texts per search request (default 64) and characters per text (default 4,096) */
  maxTexts?: number;
  maxChars?: number;
  maxK?: number;
  /** largest request body in bytes (default 4 MiB) */
  bodyLimit?: number;
  logger?: boolean;
  /** where 5xx causes go (default: the service's log, JSON lines on stderr) */
  onServerError?: (e: {
    method: string;
    url: string;
    status: number;
    requestId: string;
    message: string;
    stack?: string;
  }) => void;
}

/** The `error` field of every error response. */
export type ErrorCode =
  | "bad_request"
  | "bad_filter"
  | "invalid_json"
  | "unauthorized"
  | "forbidden"
  | "admin_disabled"
  | "not_found"
  | "method_not_allowed"
  | "body_too_large"
  | "unsupported_media_type"
  | "upgrade_refused"
  | "nothing_to_roll_back"
  | "reindex_refused"
  | "reindex_elsewhere"
  | "internal";

class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly error: ErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/**
 * The public name of a model version: a content id as it is; a path version (earlier releases) by
 * the directory's name and the first 8 hex digits of the SHA-256 of the whole path, e.g.
 * `task2@3f1c09ab` — stable, distinct for two directories of the same name, and without the path.
 */
export function modelName(version: string): string {
  if (isModelId(version)) return version;
  const hash = createHash("sha256").update(version).digest("hex").slice(0, 8);
  return `${basename(version) || "model"}@${hash}`;
}

/** an absolute path in a message: after a start, space, quote, bracket, '=' or ':' */
const ABSOLUTE_PATH = /(?<=^|[\s'"`(=:])\/[^\s'"`,;:()<>]+/g;

/**
 * `text` with every model version in `versions` replaced by its public name, and any other
 * absolute path by its last component (`…/config.json`).
 */
export function redactPaths(text: string, versions: Iterable<string>): string {
  let out = text;
  for (const v of [...new Set(versions)].filter(Boolean).sort((a, b) => b.length - a.length))
    out = out.split(v).join(modelName(v));
  return out.replace(ABSOLUTE_PATH, (p) => `…/${basename(p)}`);
}

/** A value as an error message shows it ("got …"). */
function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (typeof v === "string")
    return v.length > 40
      ? `a string of ${v.length} characters`
      : v.trim()
        ? JSON.stringify(v)
        : `the blank string ${JSON.stringify(v)}`;
  if (Array.isArray(v)) return v.length ? `an array of ${v.length} item${v.length > 1 ? "s" : ""}` : "an empty array";
  if (typeof v === "number") return String(v);
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  return "an object";
}

const quoteKey = (k: string) => `'${k.length > 64 ? `${k.slice(0, 64)}…` : k}'`;

interface SchemaError {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
  parentSchema?: { description?: string; properties?: Record<string, { description?: string }> };
  data?: unknown;
}

/**
 * One validation error as a message naming the path and what was expected (from the schema's
 * `description`), e.g. `body/k must be an integer from 1 to 1000, got "3"`.
 */
function schemaErrorMessage(e: SchemaError, dataVar: string): string {
  const path = dataVar + e.instancePath;
  const schema = e.parentSchema ?? {};
  if (e.keyword === "additionalProperties") {
    const allowed = Object.keys(schema.properties ?? {});
    const key = quoteKey(String(e.params.additionalProperty));
    return allowed.length
      ? `${path} has unknown field ${key} (allowed: ${allowed.join(", ")})`
      : `${path} has unknown field ${key} (${path} must be ${schema.description ?? "an empty object"})`;
  }
  if (e.keyword === "required") {
    const field = String(e.params.missingProperty);
    const what = schema.properties?.[field]?.description;
    return `${path} is missing the required field ${quoteKey(field)}${what ? ` (${what})` : ""}`;
  }
  return `${path} ${schema.description ? `must be ${schema.description}` : e.message}, got ${describe(e.data)}`;
}

function schemaErrorFormatter(errors: SchemaError[], dataVar: string): Error {
  const first = errors[0];
  const message = [...new Set(errors.map((e) => schemaErrorMessage(e, dataVar)))].join("; ");
  return new HttpError(400, first?.instancePath.startsWith("/filter") ? "bad_filter" : "bad_request", message);
}

/**
 * Where a body that is not JSON goes wrong: V8's reason and position, or where it names none, the
 * first character no JSON text can continue with (the end of the body when it ends too early).
 */
function jsonSyntaxMessage(text: string, err: Error): string {
  const at = /at position (\d+)/.exec(err.message);
  const reason = err.message
    .replace(/^(Unexpected token '.+?'), .* is not valid JSON$/s, "$1")
    .replace(/( in JSON)? at position \d+.*$/s, "")
    .replace(/^Unexpected end of JSON input$/, "the body ends before the JSON value does");
  let pos: number;
  if (at) pos = Number(at[1]);
  else {
    // the longest prefix that some JSON text starts with; the character after it is the error
    const viable = (n: number) => {
      try {
        JSON.parse(text.slice(0, n));
        return true;
      } catch (e) {
        const m = (e as Error).message;
        const p = /at position (\d+)/.exec(m);
        return m === "Unexpected end of JSON input" || (p !== null && Number(p[1]) >= n);
      }
    };
    let lo = 0;
    let hi = text.length;
    if (viable(hi)) pos = hi;
    else {
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (viable(mid)) lo = mid;
        else hi = mid;
      }
      pos = lo;
    }
  }
  const before = text.slice(0, pos);
  const line = before.split("\n").length;
  const column = pos - before.lastIndexOf("\n");
  return `body is not valid JSON: ${reason} at position ${pos} (line ${line}, column ${column})`;
}

const CODE_OF_STATUS: Record<number, ErrorCode> = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  413: "body_too_large",
  415: "unsupported_media_type",
};

export function buildApp(service: SearchService, reindexer: Reindexer, opts: HttpOptions = {}): FastifyInstance {
  const maxTexts = opts.maxTexts ?? 64;
  const maxChars = opts.maxChars ?? 4096;
  const maxK = opts.maxK ?? 1000;
  const bodyLimit = opts.bodyLimit ?? 4 * 1024 * 1024;
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit,
    ajv: {
      customOptions: {
        // reject what the schemas do not allow instead of dropping or coercing it
        removeAdditional: false,
        coerceTypes: false,
        // a property is a body's own ({"constructor": …} is a field, not Object's constructor)
        ownProperties: true,
        // errors carry their schema and data, for messages that say what was expected and what came
        verbose: true,
      },
    },
    schemaErrorFormatter: (errors, dataVar) => schemaErrorFormatter(errors as SchemaError[], dataVar),
  });

  /** public names of model versions (a handful per service; the cache is cleared if it grows) */
  const names = new Map<string, string>();
  const name = (version: string) => {
    let n = names.get(version);
    if (n === undefined) {
      if (names.size > 1000) names.clear();
      n = modelName(version);
      names.set(version, n);
    }
    return n;
  };
  /**
   * the versions a message may mention by path (a content id is its own public name, so only the
   * path versions of earlier releases are replaced): the store's and the re-index target
   */
  const knownVersions = async () => {
    const target = reindexer.status.target;
    return [...Object.keys(await service.versions()), ...(target ? [target] : [])];
  };
  // (the process running the re-index, host:pid, is for the admin routes only)
  const publicStatus = async ({ runningOn: _, ...s }: ReindexStatus) => ({
    ...s,
    target: s.target === null ? null : name(s.target),
    ...(s.error === undefined ? {} : { error: redactPaths(s.error, await knownVersions()) }),
  });

  const serverError =
    opts.onServerError ??
    ((e: Record<string, unknown>) => service.log({ level: "error", event: "request-failed", ...e }));
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    if (err instanceof HttpError)
      return reply.code(err.statusCode).headers(err.headers).send({ error: err.error, message: err.message });
    if (err instanceof FilterError) return reply.code(400).send({ error: "bad_filter", message: err.message });
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) {
      serverError({
        method: req.method,
        url: req.url,
        status,
        requestId: req.id,
        message: err.message,
        stack: err.stack,
      });
      return reply
        .code(status)
        .send({ error: "internal", message: `internal error (request ${req.id}): the cause is in the service's log` });
    }
    const code = CODE_OF_STATUS[status] ?? "bad_request";
    let message = err.message;
    if (err.code === "FST_ERR_CTP_BODY_TOO_LARGE")
      message = `the body is larger than the limit of ${bodyLimit} bytes (${(bodyLimit / 2 ** 20).toFixed(1)} MiB)`;
    else if (err.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE")
      message = req.headers["content-type"]
        ? `content-type '${req.headers["content-type"]}' is not supported: send a JSON body with content-type application/json`
        : "the body has no content-type: send a JSON body with content-type application/json";
    else if (err.code === "FST_ERR_CTP_INVALID_CONTENT_LENGTH")
      message = "the body's length differs from its Content-Length header";
    return reply.code(status).send({ error: code, message });
  });

  // JSON bodies only; a syntax error is answered with its position
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_req, body, done) => {
    const text = body as string;
    if (!text.trim()) {
      done(new HttpError(400, "invalid_json", "the body is empty: send a JSON object"), undefined);
      return;
    }
    try {
      // JSON.parse defines a "__proto__" key as an own property (it never sets a prototype); the
      // schemas reject keys they do not declare, own properties only
      done(null, JSON.parse(text));
    } catch (e) {
      done(new HttpError(400, "invalid_json", jsonSyntaxMessage(text, e as Error)), undefined);
    }
  });

  // unknown routes and wrong methods are answered before anything else (no body is read)
  const methodsOf = new Map<string, Set<string>>();
  app.addHook("onRoute", (route) => {
    const methods = methodsOf.get(route.url) ?? new Set<string>();
    for (const m of [route.method].flat()) methods.add(m);
    methodsOf.set(route.url, methods);
  });
  app.addHook("onRequest", async (req) => {
    if (!req.is404) return;
    const path = req.url.split("?")[0] as string;
    const shown = path.length > 200 ? `${path.slice(0, 200)}…` : path;
    const allowed = methodsOf.get(path);
    if (allowed) {
      const allow = [...allowed].sort().join(", ");
      throw new HttpError(405, "method_not_allowed", `${req.method} is not allowed on ${shown} (allowed: ${allow})`, {
        allow,
      });
    }
    throw new HttpError(404, "not_found", `no route ${req.method} ${shown}`);
  });
  // fastify validates a missing body as null: say that there is none
  app.addHook("preValidation", async (req) => {
    const schema = req.routeOptions.schema?.body as { description?: string } | undefined;
    if (schema && req.body === undefined)
      throw new HttpError(400, "bad_request", `body must be ${schema.description}, got nothing`);
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: "not_found", message: `no route ${req.method} ${req.url.split("?")[0]}` }),
  );

  // constant time: both sides are hashed to 32 bytes, so not even the length is compared early
  const digest = (s: string) => createHash("sha256").update(s).digest();
  const want = opts.token ? digest(opts.token) : null;
  const challenge = { "www-authenticate": 'Bearer realm="qdc admin"' };
  /** an onRequest hook: the token is checked before the body is read */
  const admin = async (req: FastifyRequest) => {
    if (!want)
      throw new HttpError(
        403,
        "admin_disabled",
        "admin endpoints are disabled: start the service with a token (--token or QDC_ADMIN_TOKEN)",
      );
    const header = req.headers.authorization;
    if (!header)
      throw new HttpError(
        401,
        "unauthorized",
        "admin endpoints need the bearer token: send 'Authorization: Bearer <token>'",
        challenge,
      );
    const got = /^Bearer +(\S+) *$/i.exec(header)?.[1];
    if (got === undefined)
      throw new HttpError(401, "unauthorized", "the Authorization header must be 'Bearer <token>'", {
        "www-authenticate": 'Bearer realm="qdc admin", error="invalid_request"',
      });
    if (!timingSafeEqual(digest(got), want)) throw new HttpError(403, "forbidden", "the bearer token is wrong");
  };

  // filters are equality on the store's own declared fields (own keys of its schema)
  const fields = service.store.schema.fields;
  const fieldNames = Object.keys(fields);
  const textSchema = {
    type: "string",
    minLength: 1,
    maxLength: maxChars,
    pattern: "\\S",
    description: `a non-blank string of at most ${maxChars} characters`,
  };
  app.post(
    "/search",
    {
      schema: {
        body: {
          type: "object",
          description: "a JSON object {texts, k?, filter?}",
          required: ["texts"],
          additionalProperties: false,
          properties: {
            texts: {
              type: "array",
              minItems: 1,
              maxItems: maxTexts,
              items: textSchema,
              description: `an array of 1 to ${maxTexts} non-blank strings of at most ${maxChars} characters`,
            },
            k: { type: "integer", minimum: 1, maximum: maxK, default: 10, description: `an integer from 1 to ${maxK}` },
            filter: {
              type: "object",
              description: fieldNames.length
                ? `an object of equality conditions on the store's fields (${fieldNames.map((f) => `${f}: ${fields[f]}`).join(", ")})`
                : "an empty object: the store has no filterable fields",
              additionalProperties: false,
              properties: Object.fromEntries(
                fieldNames.map((f) => [
                  f,
                  fields[f] === "number"
                    ? { type: "number", description: "a number" }
                    : { type: "string", pattern: "^[^\\u0000]*$", description: "a string (no NUL characters)" },
                ]),
              ),
            },
          },
        },
      },
    },
    async (req) => {
      const body = req.body as { texts: string[]; k: number; filter?: Record<string, string | number> };
      const r = await service.search(body.texts, body.k, body.filter);
      return {
        model: name(r.model),
        versions: Object.fromEntries(Object.entries(r.versions).map(([v, x]) => [name(v), x])),
        results: r.results.map((hits) =>
          hits.map((h) => ({
            id: h.id,
            score: h.score,
            version: name(h.version),
            ...(Object.keys(h.fields).length ? { fields: h.fields } : {}),
          })),
        ),
        timings: r.timings,
      };
    },
  );

  app.get("/health", async () => {
    const problems = service.problems;
    const known = problems.length ? await knownVersions() : [];
    return {
      status: problems.length ? "degraded" : "ok",
      model: name(service.model.version),
      store: service.store.kind,
      rows: await service.store.count(),
      ...(problems.length ? { problems: problems.map((p) => redactPaths(p, known)) } : {}),
    };
  });

  app.get("/models", async () => {
    const versions = await service.versions();
    return {
      current: name(service.model.version),
      lineage: lineageOf(service.model.dir).map((e) => name(e.id)),
      compensation: service.model.compensation,
      store: {
        kind: service.store.kind,
        indexed: service.store.indexed,
        versions: Object.fromEntries(Object.entries(versions).map(([v, n]) => [name(v), n])),
      },
      reindex: await publicStatus(reindexer.status),
    };
  });

  app.post(
    "/admin/upgrade",
    {
      onRequest: admin,
      schema: {
        body: {
          type: "object",
          description: "a JSON object {model, minOverlap?}",
          required: ["model"],
          additionalProperties: false,
          properties: {
            model: {
              type: "string",
              minLength: 1,
              description: "a model directory on the server, or a model id found under the service's model roots",
            },
            minOverlap: {
              type: "number",
              minimum: 0,
              maximum: 1,
              description:
                "the least overlap@10 with the current results the candidate must keep (checked before the switch)",
            },
          },
        },
      },
    },
    async (req) => {
      const { model: ref, minOverlap } = req.body as { model: string; minOverlap?: number };
      try {
        const r = await service.upgrade(ref, undefined, { minOverlap });
        return {
          previous: name(r.previous),
          current: name(r.current),
          ...(r.check
            ? {
                check: {
                  queries: r.check.queries,
                  source: r.check.source,
                  overlap: r.check.overlap,
                  seconds: r.check.seconds,
                },
              }
            : {}),
        };
      } catch (e) {
        const message = (e as Error).message;
        service.log({ level: "warn", event: "upgrade-refused", model: isModelId(ref) ? ref : resolve(ref), message });
        throw new HttpError(400, "upgrade_refused", `cannot upgrade: ${redactPaths(message, await knownVersions())}`);
      }
    },
  );

  app.post("/admin/rollback", { onRequest: admin }, async () => {
    try {
      const r = await service.rollback();
      return { previous: name(r.previous), current: name(r.current) };
    } catch (e) {
      if (e instanceof NothingToRollBack) throw new HttpError(409, "nothing_to_roll_back", e.message);
      const message = (e as Error).message;
      service.log({ level: "warn", event: "rollback-refused", model: service.previous, message });
      throw new HttpError(400, "upgrade_refused", `cannot roll back: ${redactPaths(message, await knownVersions())}`);
    }
  });

  app.post(
    "/admin/reindex",
    {
      onRequest: admin,
      schema: {
        body: {
          type: "object",
          description: "a JSON object {action}",
          required: ["action"],
          additionalProperties: false,
          properties: {
            action: {
              enum: ["start", "pause", "resume", "status"],
              description: "one of start, pause, resume, status",
            },
          },
        },
      },
    },
    async (req) => {
      const action = (req.body as { action: "start" | "pause" | "resume" | "status" }).action;
      if (action === "start" || action === "resume") {
        // one process re-indexes a store: the one holding its lease (another replica, a worker)
        const other = await reindexer.acquire();
        if (other)
          throw new HttpError(
            409,
            "reindex_elsewhere",
            `the re-index of this store runs in ${other.owner} (its lease lasts until ${new Date(other.until).toISOString()}): see or pause it there; this replica takes it over if that process stops`,
          );
      }
      const status = action === "status" ? reindexer.status : await reindexer[action]();
      // a re-index the store cannot take (another dimension) is refused, not reported as started
      if (
        (action === "start" || action === "resume") &&
        status.state === "failed" &&
        service.model.dimension !== service.store.schema.dim
      )
        throw new HttpError(
          409,
          "reindex_refused",
          redactPaths(status.error ?? "the re-index cannot run", await knownVersions()),
        );
      return { ...(await publicStatus(status)), ...(status.runningOn ? { runningOn: status.runningOn } : {}) };
    },
  );

  return app;
}
