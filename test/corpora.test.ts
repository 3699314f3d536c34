/** The offline benchmark's text sources, parsed from hand-written snippets in each file format. */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { buildBenchmark, hashOrder, preparePairs, TASK_SOURCES } from "../src/corpora/build.js";
import { parseTranslations } from "../src/corpora/debian.js";
import { parseFoldoc } from "../src/corpora/foldoc.js";
import { clozePairs, infoParagraphs, podParagraphs } from "../src/corpora/general.js";
import { parseManPage } from "../src/corpora/manpages.js";
import { parsePydocHtml } from "../src/corpora/pydoc.js";
import { roffSections, unescapeRoff } from "../src/corpora/roff.js";
import { fileIds, type Pair } from "../src/corpora/source.js";
import { parseSynset } from "../src/corpora/wordnet.js";
import { readQrels } from "../src/data/beir.js";
import { readAllIdTexts } from "../src/data/texts.js";
import { Tokenizer } from "../src/models/tokenizer.js";
import {
  basicTokens,
  buildWordPieceVocab,
  SPECIAL_TOKENS,
  writeWordPieceVocab,
} from "../src/models/wordpiece-vocab.js";

describe("text sources", () => {
  it("Debian Translation-en: short → long description, paragraph dots dropped", () => {
    const text = [
      "Package: jq",
      "Description-md5: 0123",
      "Description-en: lightweight and flexible command-line JSON processor",
      " jq is like sed for JSON data.",
      " .",
      " It is written in portable C.",
      "",
      "Package: empty",
      "Description-en: no long part",
      "",
    ].join("\n");
    assert.deepEqual(parseTranslations(text), [
      {
        id: "jq",
        query: "lightweight and flexible command-line JSON processor",
        document: "jq is like sed for JSON data. It is written in portable C.",
      },
    ]);
  });

  it("WordNet: definition → words and examples; thin synsets dropped", () => {
    const line =
      '00217593 04 n 02 kill 1 shoot_down 0 002 @ 00217014 n 0000 + 00355365 v 0101 | the destruction of an enemy plane; "the pilot reported two kills"; "a clean kill"  ';
    assert.deepEqual(parseSynset(line, "noun"), {
      id: "noun-00217593",
      query: "the destruction of an enemy plane",
      document: "kill, shoot down: the pilot reported two kills; a clean kill",
    });
    assert.equal(
      parseSynset(
        "00217499 04 n 01 disaster 0 001 @ 00217014 n 0000 | an act that has disastrous consequences  ",
        "noun",
      ),
      null,
    );
    assert.equal(parseSynset("  1 This software and database is being provided", "noun"), null);
  });

  it("FOLDOC: term → definition without braces, tags and dates", () => {
    const text =
      "abstract data type\nADT\n\n   <programming> (ADT) A kind of {data abstraction} where a\n   type's form is hidden.\n\n   (2003-07-03)\n\nLIDO\n\n   An input language for LIGA.\n";
    assert.deepEqual(parseFoldoc(text), [
      {
        id: "abstract data type",
        query: "abstract data type",
        document: "(ADT) A kind of data abstraction where a type's form is hidden.",
      },
      { id: "LIDO", query: "LIDO", document: "An input language for LIGA." },
    ]);
  });

  it("man pages: NAME line → DESCRIPTION text, roff markup removed", () => {
    const page = [
      '.\\" comment',
      ".de XX",
      "\\\\$1 macro body",
      "..",
      ".TH strtol 3",
      ".SH NAME",
      "strtol, strtoll \\- convert a string to a long integer",
      ".SH DESCRIPTION",
      "The",
      ".BR strtol ()",
      "function converts the \\fIinitial\\fP part of the string",
      ".I nptr",
      "to a value \\[aq]in\\[aq] base 10 or more.",
      ".SH SEE ALSO",
      ".BR atoi (3)",
    ].join("\n");
    assert.deepEqual(parseManPage(page, "strtol.3"), {
      id: "strtol.3",
      query: "strtol, strtoll - convert a string to a long integer",
      document: "The strtol() function converts the initial part of the string nptr to a value 'in' base 10 or more.",
    });
    assert.equal(parseManPage(".so man3/strtol.3\n", "strtoll.3"), null);
    assert.equal(unescapeRoff("\\fBbold\\fR \\(em \\e"), "bold — \\");
    assert.deepEqual([...roffSections('.SH NAME\nx \\- y\n.SH "SEE ALSO"\nz').keys()], ["NAME", "SEE ALSO"]);
  });

  it("Python reference: signature → description paragraphs", () => {
    const html =
      '<dt class="sig sig-object py" id="os.getenv"><span class="sig-prename descclassname"><span class="pre">os.</span></span><span class="sig-name descname"><span class="pre">getenv</span></span><span class="sig-paren">(</span><em class="sig-param">key</em>, <em class="sig-param">default=None</em><span class="sig-paren">)</span><a class="headerlink" href="#os.getenv">¶</a></dt>\n<dd><p>Return the value of the environment variable <em>key</em> if it exists &amp; is set.</p>\n</dd>';
    assert.deepEqual(parsePydocHtml(html), [
      {
        id: "os.getenv",
        query: "os.getenv(key, default=None)",
        document: "Return the value of the environment variable key if it exists & is set.",
      },
    ]);
  });

  it("general corpus: inverse cloze over prose paragraphs of info and POD", () => {
    const info =
      "File: x.info, Node: Top\n\n* Menu:\n* a::\n\nGrep searches input files for lines. It prints each matching line to output. Options change what it does.\n";
    const paras = infoParagraphs(info);
    const pairs = clozePairs(paras, "x.info");
    assert.deepEqual(pairs, [
      {
        id: "x.info#1",
        query: "Grep searches input files for lines.",
        document: "It prints each matching line to output. Options change what it does.",
      },
    ]);
    assert.deepEqual(
      podParagraphs(
        "=head1 NAME\n\nThe B<perl> function L<open|perlfunc/open> reads C<< $x >> here.\n\n    verbatim code\n",
      ),
      ["The perl function open reads $x here."],
    );
  });

  it("pairs: seeded order, duplicates dropped, truncation", () => {
    assert.equal(hashOrder(0, "a"), hashOrder(0, "a"));
    assert.notEqual(hashOrder(0, "a"), hashOrder(1, "a"));
    const pairs = [
      { id: "1", query: "q one", document: "doc one" },
      { id: "2", query: "Q ONE", document: "doc two" }, // duplicate query (case-insensitive)
      { id: "3", query: "q three", document: "DOC ONE" }, // duplicate document
      { id: "4", query: "q four", document: "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10" },
    ];
    const a = preparePairs(pairs, 7, 8);
    assert.deepEqual(a, preparePairs([...pairs].reverse(), 7, 8), "order depends on the seed and ids only");
    assert.equal(new Set(a.map((p) => p.query.toLowerCase())).size, a.length);
    assert.equal(new Set(a.map((p) => p.document.toLowerCase())).size, a.length);
    assert.equal(a.length, 2);
    assert.equal(a.find((p) => p.id === "4")?.document, "w1 w2 w3 w4 w5 w6 w7 w8");
  });
});

describe("benchmark ids", () => {
  it("file ids: whitespace → _, unchanged otherwise, unique and independent of order", () => {
    const raw = ["control unit", "LIDO", "foo bar", "foo_bar", "foo  bar", " x\t", "a~b"];
    const ids = fileIds(raw);
    assert.deepEqual(Object.fromEntries(ids), {
      "control unit": "control_unit",
      LIDO: "LIDO",
      foo_bar: "foo_bar", // a source id without whitespace keeps its id
      "foo  bar": "foo_bar~2", // code point order: "foo  bar" < "foo bar"
      "foo bar": "foo_bar~3",
      " x\t": "x",
      "a~b": "a~b",
    });
    assert.deepEqual(fileIds([...raw].reverse()), ids);
    assert.equal(new Set(ids.values()).size, raw.length);
  });

  it("a built task writes no id with whitespace; its qrels, queries and corpus agree", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-ids-"));
    const pairs: Pair[] = Array.from({ length: 40 }, (_, i) => ({
      id: i === 0 ? "foo_bar" : i === 1 ? "foo bar" : `term number ${i}`,
      query: `query ${i} about topic ${i * 7}`,
      document: `document ${i} describing topic ${i * 7} in a few words`,
    }));
    TASK_SOURCES.spaced = {
      name: "spaced",
      description: "ids with spaces",
      packages: [],
      licence: "test",
      requires: [],
      read: async () => pairs,
    };
    try {
      await buildBenchmark({
        out: join(dir, "data"),
        tasks: ["spaced"],
        trainPairs: 10,
        testQueries: 20,
        corpusSize: 30,
        generalPairs: 10,
        maxWords: 32,
        seed: 0,
      });
    } finally {
      delete TASK_SOURCES.spaced;
    }
    const t = join(dir, "data", "spaced");
    const corpus = (await readAllIdTexts(join(t, "corpus.jsonl"))).map((d) => d.id);
    const queries = (await readAllIdTexts(join(t, "queries.jsonl"))).map((q) => q.id);
    const qrels = await readQrels(join(t, "qrels", "test.tsv"));
    for (const id of [...corpus, ...queries]) assert.doesNotMatch(id, /\s/, id);
    assert.equal(new Set(corpus).size, 30);
    assert.deepEqual(new Set(qrels.keys()), new Set(queries));
    for (const docs of qrels.values()) for (const d of docs.keys()) assert.ok(corpus.includes(d), d);
    assert.ok(corpus.includes("spaced:term_number_5"), "whitespace became _");
    const tsv = readFileSync(join(t, "qrels", "test.tsv"), "utf8")
      .trim()
      .split("\n");
    assert.ok(tsv.slice(1).every((l) => /^q:spaced:\S+\tspaced:\S+\t1$/.test(l)));
  });

  it("FOLDOC's multi-word terms get ids without whitespace", () => {
    const text =
      "control unit\n\n   The part of a CPU that directs its operation.\n\nLIDO\n\n   An input language for LIGA.\n";
    const pairs = parseFoldoc(text);
    assert.deepEqual(
      pairs.map((p) => fileIds(pairs.map((x) => x.id)).get(p.id)),
      ["control_unit", "LIDO"],
    );
  });
});

describe("WordPiece vocabulary", () => {
  it("starts with the special tokens and covers its text without [UNK]", () => {
    assert.deepEqual(basicTokens("Héllo, World!"), ["hello", ",", "world", "!"]);
    const texts = [
      "the quick brown fox jumps over the lazy dog",
      "dogs jumped quickly; foxes are brown",
      "unbelievable jumping",
    ];
    const vocab = buildWordPieceVocab(texts, 120);
    assert.deepEqual(vocab.slice(0, 5), SPECIAL_TOKENS);
    assert.equal(vocab.length, new Set(vocab).size);
    assert.ok(vocab.length <= 120);
    const dir = mkdtempSync(join(tmpdir(), "qdc-vocab-"));
    writeWordPieceVocab(dir, vocab, 64);
    const tok = Tokenizer.fromDir(dir);
    for (const t of texts) {
      const ids = tok.encode(t);
      assert.equal(tok.idToToken(ids[0]!), "[CLS]");
      assert.ok(!ids.includes(vocab.indexOf("[UNK]")), `[UNK] in ${t}`);
    }
    assert.ok(tok.encode("quick").length === 3, "a frequent word is one token");
    assert.throws(() => buildWordPieceVocab(texts, 10), /vocabulary size must be an integer ≥ 100/);
  });
});
