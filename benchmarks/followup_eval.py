"""Follow-up questions: does retrieval follow the follow-up, without a language model?

Pairs of (first question, follow-up) are asked as a two-turn conversation; the follow-up is
condensed by ``condense_question`` with no model (the default install) and retrieved with the
default hybrid retriever. Scored: the follow-up's passage in the top 3. Pairs:

- docs/: hand-written pairs about ragmem's own documentation (listed below), English and Chinese;
  the expected passage is the chunk holding a given phrase.
- SQuAD v1.1 / CMRC 2018 (the ingested articles of qa_corpus.py): the first question about one
  paragraph, the follow-up a real question about another paragraph, asked as a follow-up:
  "new subject": "And <question>?" / "那<question>" (it names its own subject and must keep it);
  "pronoun": the article's name in the follow-up (its title, or the title's first or last word:
  "Tesla") replaced by "it" / "它", the name being in the first question too, so the subject has
  to be borrowed. CMRC articles have one paragraph each, so
  a CMRC "new subject" pair takes its follow-up from another article and a "pronoun" pair from
  the same one.

Each pair is scored with today's condensation, the one before issue 13 (git ``BEFORE``), the bare
follow-up, and the original standalone question (the ceiling). Target (issue 13): >= 0.90.

Usage:
    nice -n 10 .venv/bin/python benchmarks/followup_eval.py [--pairs 60] [--home /tmp/ragmem-bench]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import time
import types
from pathlib import Path

import qa_corpus as qc

BEFORE = "dc1819d"
TOP = 3

# (first question, follow-up, phrase the follow-up's passage holds)
DOCS_PAIRS = [
    ("What happens to deleted files on re-ingest?", "And changed files?", "only the chunks\nthat are new are embedded"),
    ("What happens to deleted files on re-ingest?", "And unchanged files?", "is not read\nagain, not chunked"),
    ("How are PDF files loaded?", "And DOCX files?", "DOCX"),
    ("What does ragmem ingest --dry-run do?", "And what does --rebuild do?", "--rebuild"),
    ("What is the ingest lock?", "What happens when the run is interrupted?", "interrupted"),
    ("Which encodings are detected for text files?", "And for HTML pages?", "HTML"),
    ("What does ragmem search --json print?", "And ragmem status --json?", "status --json"),
    ("What does the relevance gate do?", "And the token budget of the prompt?", "budget"),
    ("How do I change the embedder?", "What happens to the existing collection then?", "--rebuild"),
    ("What is short-term memory?", "And long-term memory?", "long-term"),
    ("What does ragmem chat do?", "And ragmem ask --explain?", "--explain"),
    ("Where do settings come from?", "And which one wins?", "wins"),
    ("重新导入时删除的文件会怎样？", "那修改过的文件呢？", "只重新嵌入变化了的片段"),
    ("中文文本文件需要转换编码吗？", "那 Big5 文件呢？", "Big5"),
    ("切块时长度怎么计算？", "那分隔符的优先顺序呢？", "分隔符的优先顺序"),
]


def old_condense():
    code = subprocess.run(["git", "show", f"{BEFORE}:rag_memory/memory/condense.py"], cwd=qc.ROOT, check=True,
                          capture_output=True, text=True).stdout
    module = types.ModuleType("condense_before")
    exec(compile(code, "condense_before.py", "exec"), module.__dict__)
    return module.condense_question


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def squad_pairs(corpus: qc.Corpus, n: int, rng: random.Random) -> list[dict]:
    by_passage: dict[str, list[qc.QA]] = {}
    for qa in corpus.present:
        by_passage.setdefault(qa.passage, []).append(qa)
    pairs = []
    articles = sorted({qa.article for qa in corpus.present})
    new, pron = [], []
    for ai in articles:
        pids = [p for p in corpus.articles[ai] if p in by_passage]
        title = corpus.titles[ai].replace("_", " ").split(",")[0]
        # The article's name as questions write it: the title, or its first or last word.
        names = [n for n in dict.fromkeys([title, title.split()[0], title.split()[-1]])
                 if len(n) >= 4 and n[:1].isupper()]
        for _ in range(40):
            if len(pids) < 2:
                break
            p1, p2 = rng.sample(pids, 2)
            q1, q2 = rng.choice(by_passage[p1]), rng.choice(by_passage[p2])
            new.append({"kind": "new subject", "first": q1.question,
                        "follow_up": "And " + _lower_first(q2.question), "standalone": q2.question, "passage": p2})
            for name in names:
                t1 = [q for q in by_passage[p1] if re.search(rf"\b{re.escape(name)}\b", q.question)]
                t2 = [q for q in by_passage[p2] if re.search(rf"\b{re.escape(name)}\b", q.question)]
                if t1 and t2:
                    a, b = rng.choice(t1), rng.choice(t2)
                    follow = re.sub(rf"\b(?:the )?{re.escape(name)}(?:'s)?\b", "it", b.question, count=1)
                    pron.append({"kind": "pronoun", "first": a.question, "follow_up": follow,
                                 "standalone": b.question, "passage": p2})
                    break
    pairs += qc.sample(new, n) + qc.sample(_unique(pron), n)
    return pairs


def cmrc_pairs(corpus: qc.Corpus, n: int, rng: random.Random) -> list[dict]:
    qs = list(corpus.present)
    new, pron = [], []
    for _ in range(n * 3):
        a, b = rng.sample(qs, 2)
        if a.article != b.article:
            new.append({"kind": "new subject", "first": a.question, "follow_up": "那" + b.question.rstrip("？?") + "呢？",
                        "standalone": b.question, "passage": b.passage})
    by_article: dict[int, list[qc.QA]] = {}
    for qa in qs:
        by_article.setdefault(qa.article, []).append(qa)
    for ai, items in by_article.items():
        title = corpus.titles.get(ai, "")
        with_title = [q for q in items if title and len(title) >= 2 and title in q.question]
        if len(with_title) >= 2:
            a, b = rng.sample(with_title, 2)
            pron.append({"kind": "pronoun", "first": a.question, "follow_up": b.question.replace(title, "它", 1),
                         "standalone": b.question, "passage": b.passage})
    return qc.sample(_unique(new), n) + qc.sample(pron, n)


def _unique(pairs: list[dict]) -> list[dict]:
    seen, out = set(), []
    for p in pairs:
        if p["follow_up"] not in seen:
            seen.add(p["follow_up"])
            out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--articles", type=int, default=None, help="as in answer_gate.py (default: squad 16, cmrc 240)")
    ap.add_argument("--pairs", type=int, default=60, help="pairs per kind per data set")
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--examples", type=int, default=0)
    ap.add_argument("--out", type=Path, default=qc.ROOT / "benchmarks/results/followup_eval.json")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadiest on a shared machine)")
    args = ap.parse_args()
    qc.set_threads(args.threads)

    from rag_memory.config import Settings
    from rag_memory.memory.condense import condense_question
    from rag_memory.pipelines.components import Components
    from rag_memory.schema import Turn

    variants = {"now": condense_question, "before": old_condense(), "bare follow-up": lambda q, r: q,
                "standalone (ceiling)": None}
    rng = random.Random(qc.SEED)
    started = time.perf_counter()
    table, data, shown = [], {}, 0
    with qc.workdir(args.home) as work:
        suites = []
        settings = Settings.load({"home": str(Path(work) / "home"), "collection": "bench-docs"})
        docs = Components(settings)
        report = docs.ingestor().run([qc.ROOT / "docs"])
        qc.progress(f"docs: {len(report.added)} added, {len(report.unchanged)} unchanged")
        suites.append(("docs", docs, None, [{"kind": "docs", "first": a, "follow_up": b, "standalone": None,
                                             "phrase": c, "lang": "zh" if re.search(r"[\u4e00-\u9fff]", a) else "en"}
                                            for a, b, c in DOCS_PAIRS]))
        for name in ("squad", "cmrc"):
            default = {"squad": 16, "cmrc": 240}[name]
            corpus = qc.load(name, args.data_dir, default if args.articles is None else args.articles)
            parts, mapping = qc.ingest(corpus, Path(work), qc.progress)
            pairs = squad_pairs(corpus, args.pairs, rng) if name == "squad" else cmrc_pairs(corpus, args.pairs, rng)
            for p in pairs:
                p["lang"] = corpus.language
            suites.append((name, parts, mapping, pairs))
            data[name] = {**corpus.settings, "chunks": parts.store.count()}
        for name, parts, mapping, pairs in suites:
            groups: dict[tuple[str, str], dict[str, list[bool]]] = {}
            for p in pairs:
                recent = [Turn("user", p["first"], "u", "s", ""), Turn("assistant", "…", "u", "s", "")]
                for variant, fn in variants.items():
                    if fn is None and p["standalone"] is None:
                        continue
                    query = p["standalone"] if fn is None else fn(p["follow_up"], recent)
                    hits = parts.retriever.retrieve(query, top_k=TOP)
                    if mapping is None:
                        ok = any(" ".join(p["phrase"].split()) in " ".join(h.text.split()) for h in hits)
                    else:
                        ok = any(mapping.get(h.source) == p["passage"] for h in hits)
                    groups.setdefault((p["lang"], p["kind"]), {}).setdefault(variant, []).append(ok)
                    if variant == "now" and not ok and shown < args.examples:
                        shown += 1
                        print(f"MISS [{name}] {p['first']!r} -> {p['follow_up']!r}\n     condensed: {query!r}")
            for (lang, kind), by_variant in sorted(groups.items()):
                for variant, oks in by_variant.items():
                    table.append({"source": name, "language": lang, "kind": kind, "condensation": variant,
                                  "pairs": len(oks), f"top{TOP}": round(sum(oks) / len(oks), 4)})
            parts.lexical.close()
    # Per language, over every pair of that language.
    for lang in ("en", "zh"):
        for variant in variants:
            rows = [r for r in table if r["language"] == lang and r["condensation"] == variant]
            if rows:
                n = sum(r["pairs"] for r in rows)
                table.append({"source": "all", "language": lang, "kind": "all", "condensation": variant, "pairs": n,
                              f"top{TOP}": round(sum(r[f"top{TOP}"] * r["pairs"] for r in rows) / n, 4)})
    print(f"\n{'source':6s} {'lang':4s} {'kind':12s} {'condensation':22s} {'pairs':>5s} {'top3':>6s}")
    for r in table:
        print(f"{r['source']:6s} {r['language']:4s} {r['kind']:12s} {r['condensation']:22s} {r['pairs']:5d} {r[f'top{TOP}']:6.3f}")
    result = {"benchmark": "followup_eval", "before": f"git {BEFORE}:rag_memory/memory/condense.py",
              "top": TOP, "pairs_per_kind": args.pairs, "docs_pairs": DOCS_PAIRS, "data": data,
              "machine": qc.machine(), "seconds": round(time.perf_counter() - started, 1), "table": table,
              "full_data_command": "nice -n 10 .venv/bin/python benchmarks/followup_eval.py --articles 0 --pairs 500"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
