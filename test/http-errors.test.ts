/**
 * The HTTP edge: every error is a JSON {error, message} whose code and message say exactly what is
 * wrong (the field or position, what was expected, what came); admin requests are authenticated
 * before their body is looked at (401 without a token, 403 with a wrong one); filters are checked
 * against the store's own fields; and no response names a model by its path.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { hashModel } from "../src/lineage/index.js";
import { buildApp, modelName, redactPaths } from "../src/server/http.js";
import { loadCorpus } from "../src/server/load.js";
import { Reindexer } from "../src/server/reindex.js";
import { SearchService } from "../src/server/service.js";
import { LanceStore } from "../src/store/lancedb.js";
import { FIXTURES } from "./helpers.js";

const TOKEN = "edge-t0ken";
const N = 12;

interface Res {
  status: number;
  headers: Headers;
  text: string;
  body: Record<string, unknown>;
}

describe("HTTP errors", () => {
  const dir = mkdtempSync(join(tmpdir(), "qdc-http-"));
  const modelDir = resolve(FIXTURES, "bert-tiny");
  const logged: Record<string, unknown>[] = [];
  let service: SearchService;
  let app: FastifyInstance;
  let noAdmin: FastifyInstance;
  let base = "";
  let baseNoAdmin = "";

  /** a raw request: `body` as given (a string is sent as is), JSON content-type unless overridden */
  const req = async (
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
    at = base,
  ): Promise<Res> => {
    const r = await fetch(at + path, {
      method,
      headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, headers: r.headers, text, body: text ? JSON.parse(text) : {} };
  };
  const auth = { authorization: `Bearer ${TOKEN}` };
  const expectError = (r: Res, status: number, error: string, message: string | RegExp, what = "") => {
    assert.equal(r.status, status, `${what}: ${r.text}`);
    assert.equal(r.body.error, error, `${what}: ${r.text}`);
    if (typeof message === "string") assert.equal(r.body.message, message, what);
    else assert.match(String(r.body.message), message, what);
  };

  before(async () => {
    const corpus = join(dir, "corpus.jsonl");
    // `constructor` is a field of this store (on every other row): a name that every object inherits
    const rows = Array.from({ length: N }, (_, i) =>
      JSON.stringify({
        _id: `doc${i}`,
        text: `notes ${i} on rivers and compilers`,
        lang: i % 2 ? "en" : "de",
        ...(i % 2 ? { constructor: i } : {}),
      }),
    );
    writeFileSync(corpus, `${rows.join("\n")}\n`);
    const store = await LanceStore.open(join(dir, "store"), {
      dim: 64,
      fields: { lang: "string", constructor: "number" } as Record<string, "string" | "number">,
    });
    await loadCorpus(store, modelDir, corpus);
    service = await SearchService.create({ store, modelDir, encoder: "inline", log: (e) => logged.push(e) });
    const reindexer = new Reindexer(service);
    app = buildApp(service, reindexer, { token: TOKEN });
    base = await app.listen({ port: 0, host: "127.0.0.1" });
    noAdmin = buildApp(service, reindexer, {});
    baseNoAdmin = await noAdmin.listen({ port: 0, host: "127.0.0.1" });
  });
  after(async () => {
    await app.close();
    await noAdmin.close();
    await service.close();
  });

  it("names an unknown body field and the allowed ones", async () => {
    expectError(
      await req("POST", "/search", { texts: ["rivers"], topk: 3 }),
      400,
      "bad_request",
      "body has unknown field 'topk' (allowed: texts, k, filter)",
    );
    expectError(
      await req("POST", "/admin/upgrade", { model: modelDir, force: true }, auth),
      400,
      "bad_request",
      "body has unknown field 'force' (allowed: model, minOverlap)",
    );
    expectError(
      await req("POST", "/admin/reindex", { action: "start", batch: 8 }, auth),
      400,
      "bad_request",
      "body has unknown field 'batch' (allowed: action)",
    );
    // JSON.parse keeps "__proto__" as an own key: it is an unknown field like any other
    expectError(
      await req("POST", "/search", '{"__proto__": {"k": 1}, "texts": ["rivers"]}'),
      400,
      "bad_request",
      "body has unknown field '__proto__' (allowed: texts, k, filter)",
    );
  });

  it("names the path of every validation error, what was expected and what came", async () => {
    const texts = "an array of 1 to 64 non-blank strings of at most 4096 characters";
    const text = "a non-blank string of at most 4096 characters";
    const cases: [unknown, string][] = [
      [{}, `body is missing the required field 'texts' (${texts})`],
      [[1], "body must be a JSON object {texts, k?, filter?}, got an array of 1 item"],
      ['"rivers"', 'body must be a JSON object {texts, k?, filter?}, got "rivers"'],
      [{ texts: "rivers" }, `body/texts must be ${texts}, got "rivers"`],
      [{ texts: [] }, `body/texts must be ${texts}, got an empty array`],
      [{ texts: Array(65).fill("x") }, `body/texts must be ${texts}, got an array of 65 items`],
      [{ texts: ["ok", 7] }, `body/texts/1 must be ${text}, got 7`],
      [{ texts: [""] }, `body/texts/0 must be ${text}, got the blank string ""`],
      [{ texts: ["  \t"] }, `body/texts/0 must be ${text}, got the blank string "  \\t"`],
      [{ texts: ["x".repeat(5000)] }, `body/texts/0 must be ${text}, got a string of 5000 characters`],
      [{ texts: ["ok"], k: 0 }, "body/k must be an integer from 1 to 1000, got 0"],
      [{ texts: ["ok"], k: 2.5 }, "body/k must be an integer from 1 to 1000, got 2.5"],
      [{ texts: ["ok"], k: "3" }, 'body/k must be an integer from 1 to 1000, got "3"'],
      [{ texts: ["ok"], k: 5000 }, "body/k must be an integer from 1 to 1000, got 5000"],
      ['{"texts": ["ok"], "k": 1e400}', "body/k must be an integer from 1 to 1000, got Infinity"],
      [{ texts: ["ok"], k: null }, "body/k must be an integer from 1 to 1000, got null"],
    ];
    for (const [body, message] of cases) {
      const r = await req("POST", "/search", body);
      expectError(r, 400, "bad_request", message, JSON.stringify(body).slice(0, 60));
    }
    expectError(
      await req("POST", "/search"),
      400,
      "bad_request",
      "body must be a JSON object {texts, k?, filter?}, got nothing",
    );
    expectError(
      await req("POST", "/admin/reindex", { action: "explode" }, auth),
      400,
      "bad_request",
      'body/action must be one of start, pause, resume, status, got "explode"',
    );
    expectError(
      await req("POST", "/admin/upgrade", {}, auth),
      400,
      "bad_request",
      "body is missing the required field 'model' (a model directory on the server, or a model id found under the service's model roots)",
    );
    expectError(
      await req("POST", "/admin/upgrade", { model: "" }, auth),
      400,
      "bad_request",
      'body/model must be a model directory on the server, or a model id found under the service\'s model roots, got the blank string ""',
    );
  });

  it("checks filter keys against the store's own fields, by own property", async () => {
    const allowed = "(allowed: lang, constructor)";
    for (const key of ["toString", "hasOwnProperty", "valueOf", "__proto__", "colour", "version"]) {
      const r = await req("POST", "/search", `{"texts": ["rivers"], "filter": {${JSON.stringify(key)}: "x"}}`);
      expectError(r, 400, "bad_filter", `body/filter has unknown field '${key}' ${allowed}`, key);
    }
    expectError(
      await req("POST", "/search", { texts: ["rivers"], filter: { lang: 1 } }),
      400,
      "bad_filter",
      "body/filter/lang must be a string (no NUL characters), got 1",
    );
    expectError(
      await req("POST", "/search", { texts: ["rivers"], filter: { lang: "e\u0000n" } }),
      400,
      "bad_filter",
      'body/filter/lang must be a string (no NUL characters), got "e\\u0000n"',
    );
    expectError(
      await req("POST", "/search", { texts: ["rivers"], filter: { constructor: "x" } }),
      400,
      "bad_filter",
      'body/filter/constructor must be a number, got "x"',
    );
    expectError(
      await req("POST", "/search", { texts: ["rivers"], filter: ["en"] }),
      400,
      "bad_filter",
      "body/filter must be an object of equality conditions on the store's fields (lang: string, constructor: number), got an array of 1 item",
    );
    // a filter without `constructor` is not checked against Object's; with it, it is the store's field
    // (ids only: the LanceDB store reads a field named `constructor` back as the Arrow row's class)
    const none = await req("POST", "/search", { texts: ["rivers"], k: N, filter: {} });
    assert.equal(none.status, 200, none.text);
    assert.equal((none.body.results as unknown[][])[0]!.length, N);
    const en = await req("POST", "/search", { texts: ["rivers"], k: N, filter: { lang: "en" } });
    assert.equal(en.status, 200, en.text);
    assert.equal((en.body.results as unknown[][])[0]!.length, N / 2);
    const three = await req("POST", "/search", { texts: ["rivers"], filter: { constructor: 3 } });
    assert.equal(three.status, 200, three.text);
    assert.deepEqual(
      (three.body.results as { id: string }[][])[0]!.map((h) => h.id),
      ["doc3"],
    );
  });

  it("authenticates admin requests before looking at their body", async () => {
    for (const path of ["/admin/upgrade", "/admin/reindex"]) {
      // no token: 401 with a challenge, whatever the body
      for (const body of [{ model: modelDir }, { action: "status" }, { bogus: 1 }, "{not json", ""]) {
        const r = await req("POST", path, body);
        expectError(
          r,
          401,
          "unauthorized",
          "admin endpoints need the bearer token: send 'Authorization: Bearer <token>'",
          `${path} ${JSON.stringify(body)}`,
        );
        assert.equal(r.headers.get("www-authenticate"), 'Bearer realm="qdc admin"');
      }
      // not a bearer token
      const basic = await req("POST", path, { bogus: 1 }, { authorization: "Basic dXNlcjpwdw==" });
      expectError(basic, 401, "unauthorized", "the Authorization header must be 'Bearer <token>'");
      assert.match(String(basic.headers.get("www-authenticate")), /^Bearer realm="qdc admin"/);
      // a wrong token: 403, whatever the body; a prefix or an extension of the token is as wrong
      for (const token of ["wrong", TOKEN.slice(0, -1), `${TOKEN}x`, TOKEN.toUpperCase()])
        for (const body of [{ bogus: 1 }, "{not json"]) {
          const r = await req("POST", path, body, { authorization: `Bearer ${token}` });
          expectError(r, 403, "forbidden", "the bearer token is wrong", `${path} ${token}`);
          assert.equal(r.headers.get("www-authenticate"), null);
        }
      // a service started without a token has no admin endpoints
      for (const headers of [{}, auth]) {
        const r = await req("POST", path, { bogus: 1 }, headers, baseNoAdmin);
        expectError(
          r,
          403,
          "admin_disabled",
          "admin endpoints are disabled: start the service with a token (--token or QDC_ADMIN_TOKEN)",
        );
      }
    }
    // the scheme is case-insensitive
    const ok = await req("POST", "/admin/reindex", { action: "status" }, { authorization: `bearer ${TOKEN}` });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.body.state, "idle");
  });

  it("answers unknown routes and wrong methods with a JSON code", async () => {
    expectError(await req("GET", "/nope"), 404, "not_found", "no route GET /nope");
    expectError(
      await req("POST", "/search/extra?x=1", { texts: ["a"] }),
      404,
      "not_found",
      "no route POST /search/extra",
    );
    expectError(await req("GET", "/admin"), 404, "not_found", "no route GET /admin");
    const get = await req("GET", "/search");
    expectError(get, 405, "method_not_allowed", "GET is not allowed on /search (allowed: POST)");
    assert.equal(get.headers.get("allow"), "POST");
    const post = await req("POST", "/health?verbose=1", {});
    expectError(post, 405, "method_not_allowed", "POST is not allowed on /health (allowed: GET, HEAD)");
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    // a wrong method is answered before its body or its token is looked at
    expectError(
      await req("DELETE", "/models", "{broken"),
      405,
      "method_not_allowed",
      "DELETE is not allowed on /models (allowed: GET, HEAD)",
    );
    expectError(
      await req("GET", "/admin/upgrade"),
      405,
      "method_not_allowed",
      "GET is not allowed on /admin/upgrade (allowed: POST)",
    );
  });

  it("says where a body is not JSON, too large or not JSON at all", async () => {
    const cases: [string, string][] = [
      ['{"texts": ["a"', "Expected ',' or ']' after array element at position 14 (line 1, column 15)"],
      ['{"texts": ["a"],}', "Expected double-quoted property name at position 16 (line 1, column 17)"],
      ["texts=a", "Unexpected token 'e' at position 1 (line 1, column 2)"],
      ['{"texts": ["a"],\n "k": tru}', "Unexpected token '}' at position 26 (line 2, column 10)"],
      ['{"texts": ["a"], "k": 1', "Expected ',' or '}' after property value at position 23 (line 1, column 24)"],
      ['{"texts": ["a"], "k": ', "the body ends before the JSON value does at position 22 (line 1, column 23)"],
      ['{"texts": ["a"]} {}', "Unexpected non-whitespace character after JSON at position 17 (line 1, column 18)"],
    ];
    for (const [body, where] of cases)
      expectError(await req("POST", "/search", body), 400, "invalid_json", `body is not valid JSON: ${where}`, body);
    expectError(await req("POST", "/search", " \n"), 400, "invalid_json", "the body is empty: send a JSON object");
    expectError(
      await req("POST", "/search", JSON.stringify({ texts: ["x".repeat(5 * 2 ** 20)] })),
      413,
      "body_too_large",
      "the body is larger than the limit of 4194304 bytes (4.0 MiB)",
    );
    expectError(
      await req("POST", "/search", "texts=a", { "content-type": "text/plain" }),
      415,
      "unsupported_media_type",
      "content-type 'text/plain' is not supported: send a JSON body with content-type application/json",
    );
    expectError(
      await req("POST", "/search", '{"texts": ["a"]}', { "content-type": "" }),
      415,
      "unsupported_media_type",
      "the body has no content-type: send a JSON body with content-type application/json",
    );
    // with a charset, JSON is JSON
    const ok = await req("POST", "/search", '{"texts": ["rivers"], "k": 2}', {
      "content-type": "application/json; charset=utf-8",
    });
    assert.equal(ok.status, 200, ok.text);
  });

  it("names models without their paths, the same on every route", async () => {
    // a version is a content id, its own public name; a path version (earlier releases) is named
    // by its directory's name and a hash of the path
    const name = hashModel(modelDir);
    assert.equal(modelName(name), name);
    const pathName = modelName(modelDir);
    assert.match(pathName, /^bert-tiny@[0-9a-f]{8}$/);
    assert.equal(modelName(modelDir), pathName, "stable");
    assert.notEqual(modelName(join(dir, "bert-tiny")), pathName, "two directories of the same name stay distinct");
    const noPath = (r: Res, what: string) => {
      assert.ok(!r.text.includes(FIXTURES) && !r.text.includes(dir), `${what} has a path: ${r.text}`);
      assert.doesNotMatch(r.text, /"\/|[\s'(]\/\w/, `${what} has an absolute path: ${r.text}`);
    };
    const search = await req("POST", "/search", { texts: ["rivers"], k: 3 });
    noPath(search, "/search");
    assert.equal(search.body.model, name);
    assert.deepEqual(Object.keys(search.body.versions as object), [name]);
    assert.ok((search.body.results as { version: string }[][])[0]!.every((h) => h.version === name));
    const health = await req("GET", "/health");
    noPath(health, "/health");
    assert.deepEqual(health.body, { status: "ok", model: name, store: "lancedb", rows: N });
    const models = await req("GET", "/models");
    noPath(models, "/models");
    assert.equal(models.body.current, name);
    assert.deepEqual(models.body.lineage, [name]);
    assert.deepEqual((models.body.store as { versions: unknown }).versions, { [name]: N });
    // admin responses: the same names; an upgrade still takes a path
    const same = await req("POST", "/admin/upgrade", { model: modelDir }, auth);
    noPath(same, "/admin/upgrade");
    assert.deepEqual(same.body, { previous: name, current: name });
    const refused = await req("POST", "/admin/upgrade", { model: join(FIXTURES, "nomic-tiny") }, auth);
    noPath(refused, "a refused upgrade");
    const nomic = hashModel(join(FIXTURES, "nomic-tiny"));
    expectError(
      refused,
      400,
      "upgrade_refused",
      `cannot upgrade: the index holds vectors of ${name}, which is not in the lineage of …/nomic-tiny (${nomic} (…/nomic-tiny)), and no path of mean compensators leads there: search with a model descended from it, re-index with this model, or fit a map into its space (\`qdc drift fit --old …/bert-tiny --new …/nomic-tiny --queries … --method mean\`)`,
    );
    // the operator's log keeps the paths
    const entry = logged.find((e) => e.event === "upgrade-refused");
    assert.equal(entry?.model, join(FIXTURES, "nomic-tiny"));
    assert.match(String(entry?.message), new RegExp(`lineage of ${join(FIXTURES, "nomic-tiny")}`));
    const missing = await req("POST", "/admin/upgrade", { model: join(dir, "no-such-model") }, auth);
    noPath(missing, "an upgrade to a missing directory");
    expectError(missing, 400, "upgrade_refused", /^cannot upgrade: …\/no-such-model: no such model directory$/);
    const status = await req("POST", "/admin/reindex", { action: "start" }, auth);
    noPath(status, "/admin/reindex");
    assert.equal(status.body.target, name);
    for (;;) {
      const s = await req("POST", "/admin/reindex", { action: "status" }, auth);
      noPath(s, "/admin/reindex status");
      if (s.body.state === "done") break;
      assert.notEqual(s.body.state, "failed", s.text);
      await new Promise((r) => setTimeout(r, 20));
    }
  });

  it("reports unreachable store versions by name", async () => {
    // rows of a model that is not in the served model's lineage
    const foreign = join(dir, "elsewhere", "other-model");
    await service.store.upsert([
      { id: "foreign", text: "from elsewhere", version: foreign, vector: new Float32Array(64).fill(0.125) },
    ]);
    service.invalidate();
    const search = await req("POST", "/search", { texts: ["rivers"], k: 3 });
    assert.equal(search.status, 200, search.text);
    const health = await req("GET", "/health");
    assert.equal(health.body.status, "degraded");
    assert.ok(!health.text.includes(dir), health.text);
    const problems = health.body.problems as string[];
    assert.equal(problems.length, 1);
    assert.ok(problems[0]!.startsWith(`store rows of ${modelName(foreign)} are not searched: `), problems[0]);
    assert.ok(problems[0]!.includes(hashModel(modelDir)), problems[0]);
    const models = await req("GET", "/models");
    assert.ok(!models.text.includes(dir), models.text);
    assert.equal((models.body.store as { versions: Record<string, number> }).versions[modelName(foreign)], 1);
  });

  it("redacts paths that are not model versions to their last component", () => {
    assert.equal(
      redactPaths("cannot open '/srv/models/a/drift/mean.safetensors': ENOENT", ["/srv/models/a"]),
      `cannot open '${modelName("/srv/models/a")}/drift/mean.safetensors': ENOENT`,
    );
    assert.equal(redactPaths("read /etc/qdc/secret.json failed", []), "read …/secret.json failed");
  });
});

describe("a store without filterable fields, and 5xx responses", () => {
  it("name the filter problem; a 5xx says which request failed, not its cause", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-http-5xx-"));
    const modelDir = resolve(FIXTURES, "bert-tiny");
    const corpus = join(dir, "corpus.jsonl");
    writeFileSync(corpus, `${JSON.stringify({ _id: "d", text: "rivers" })}\n`);
    const store = await LanceStore.open(join(dir, "store"), { dim: 64, fields: {} });
    await loadCorpus(store, modelDir, corpus);
    const service = await SearchService.create({ store, modelDir, encoder: "inline" });
    const failing = Object.create(service) as SearchService;
    failing.search = async () => {
      throw new Error(`cannot read ${join(dir, "store")}/data/0.lance`);
    };
    const logged: Record<string, unknown>[] = [];
    const app = buildApp(failing, new Reindexer(service), { onServerError: (e) => logged.push(e) });
    const base = await app.listen({ port: 0, host: "127.0.0.1" });
    // (this store has no filterable fields)
    const filtered = await fetch(`${base}/search`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ texts: ["rivers"], filter: { lang: "en" } }),
    });
    assert.equal(filtered.status, 400);
    assert.deepEqual(await filtered.json(), {
      error: "bad_filter",
      message:
        "body/filter has unknown field 'lang' (body/filter must be an empty object: the store has no filterable fields)",
    });
    const r = await fetch(`${base}/search`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ texts: ["rivers"] }),
    });
    const body = (await r.json()) as Record<string, unknown>;
    assert.equal(r.status, 500);
    assert.equal(body.error, "internal");
    assert.equal(logged.length, 1);
    assert.equal(body.message, `internal error (request ${logged[0]?.requestId}): the cause is in the service's log`);
    assert.match(String(logged[0]?.message), /cannot read .*\/data\/0\.lance/);
    await app.close();
    await service.close();
  });
});
