"""BM25 over SQLite FTS5, kept in step with a Chroma collection: the one keyword index of the
knowledge base and of long-term memory.

Text is turned into terms by ``rag_memory.text.terms.lexical_terms`` before it reaches SQLite
(the FTS5 table uses the ``ascii`` tokenizer, which leaves those terms as they are), so English
and Chinese are indexed by the same code. SQLite's built-in ``bm25()`` ranks the matches, so
nothing is rebuilt per query or per process.

On a large index a Chinese query's terms are common (unigrams such as 国 or 人 match tens of
thousands of chunks), and ``bm25()`` costs about a microsecond per match. A query whose terms
are mostly CJK characters and pairs, and whose terms hold more than ``PRUNE_ABOVE`` matches in
all, is answered in two steps instead: its rarest terms, up to ``CANDIDATE_POSTINGS`` matches
in all, pick twice ``k`` candidates by their own BM25, and those candidates are scored on every
query term with FTS5's own formula (``_score``: the same numbers ``bm25()`` gives, to the last
bit). A chunk that holds none of the rare terms can then be missed; each character is indexed
alone and in two pairs, so that almost never matters (CMRC with the pruning forced onto its
small corpus: unchanged). English words are not so redundant (SQuAD, forced the same way: MRR@10
0.852 to 0.830), and English postings are shorter (stop words are dropped), so English queries
are always ranked in one FTS5 query. docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rag_memory.errors import ConfigError, StoreError
from rag_memory.schema import Chunk, Hit
from rag_memory.sqlite import Database
from rag_memory.text.terms import TERMS_VERSION, is_cjk_term, lexical_terms

log = logging.getLogger(__name__)

__all__ = ["BM25_B", "BM25_K1", "BM25Index", "CANDIDATE_POSTINGS", "MAX_QUERY_TERMS", "PRUNE_ABOVE"]

# FTS5's bm25() constants (fixed by SQLite); used to scale scores to the query's maximum and
# to score candidates exactly as bm25() does.
BM25_K1 = 1.2
BM25_B = 0.75

# A query whose terms hold more matches than this in all (the sum of their document
# frequencies) is answered in two steps: candidates from its rarest terms, then exact BM25 on
# them (see the module docstring). Below it, one FTS5 query ranks every match.
PRUNE_ABOVE = 4000
# The rarest terms that pick the candidates hold at most this many matches in all (the
# rarest term is always taken).
CANDIDATE_POSTINGS = 2000

MAX_QUERY_TERMS = 512

MIGRATIONS = [
    (
        "0001-lexical-collections",
        """
CREATE TABLE IF NOT EXISTS lexical_collections (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    terms_version TEXT NOT NULL
);
""",
    )
]


class BM25Index:
    """BM25 over one collection's chunks, persisted in SQLite FTS5 and updated incrementally.

    Args:
        path: The SQLite file (created on first write), e.g. ``<home>/lexical.sqlite3``.
        collection: The knowledge-base collection it mirrors.
        prune_above: Answer a query in two steps when its terms hold more matches than this
            in all (default ``PRUNE_ABOVE``; the module docstring says how).
        candidate_postings: How many matches the rare terms that pick the candidates may hold
            (default ``CANDIDATE_POSTINGS``).

    Example:
        >>> index = BM25Index(Path("/tmp/lexical.sqlite3"), "knowledge")  # doctest: +SKIP
        >>> index.upsert_records(["c1"], ["Paris is the capital of France"], [{"source": "/a.txt"}])
        >>> index.search("capital of France", k=3)[0].chunk_id
        'c1'
    """

    def __init__(
        self,
        path: Path,
        collection: str,
        *,
        prune_above: int | None = None,
        candidate_postings: int | None = None,
    ) -> None:
        prune_above = PRUNE_ABOVE if prune_above is None else prune_above
        candidate_postings = CANDIDATE_POSTINGS if candidate_postings is None else candidate_postings
        if prune_above < 0 or candidate_postings < 1:
            raise ConfigError(
                f"prune_above must be 0 or more and candidate_postings at least 1, got {prune_above} and"
                f" {candidate_postings}"
            )
        self.path = Path(path)
        self.collection = collection
        self.prune_above = prune_above
        self.candidate_postings = candidate_postings
        self.db = Database(self.path, "the keyword index", migrations=MIGRATIONS, error=self._db_error)
        self._lock = self.db.lock
        self._tables: tuple[str, str] | None = None
        self._vocab: str | None = None  # the FTS table whose term statistics view this connection has
        # Term statistics read so far (document frequencies; chunk count and mean length), valid
        # until a write by this connection or another.
        self._df: dict[str, int] = {}
        self._totals: tuple[int, float] | None = None
        self._df_version: int | None = None

    # -- connection ----------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    def _open_error(self, doing: str, exc: Exception) -> StoreError:
        return StoreError(
            f"cannot {doing} the keyword index {self.path}: {exc}. Check the folder's permissions and"
            " free space, or move the ragmem home with RAGMEM_HOME."
        )

    def close(self) -> None:
        with self._lock:
            self.db.close()
            self._tables = None
            self._vocab = None
            self._forget_stats()

    def _forget_stats(self) -> None:
        self._df.clear()
        self._totals = None

    @contextmanager
    def _transaction(self):
        with self.db.transaction() as conn:
            yield conn
        self._forget_stats()  # a write changes the term statistics

    def _db_error(self, doing: str, exc: Exception) -> StoreError:
        if doing in ("open", "create the folder of"):
            return self._open_error(doing, exc)
        return self._error(doing, exc)

    def _error(self, doing: str, exc: Exception) -> StoreError:
        return StoreError(
            f"cannot {doing} the keyword index of collection {self.collection!r} at {self.path}: {exc}."
            " If the file is damaged, delete it and run `ragmem ingest PATH --rebuild`."
        )

    def _lookup(self) -> tuple[str, str] | None:
        """(docs table, fts table) of the collection, or None if it has none yet."""
        if self._tables is not None:
            return self._tables
        row = self.conn.execute(
            "SELECT id, terms_version FROM lexical_collections WHERE name = ?", (self.collection,)
        ).fetchone()
        if row is None:
            return None
        tables = (f"lex_docs_{row[0]}", f"lex_fts_{row[0]}")
        self._tables = tables
        if row[1] != TERMS_VERSION:
            self._retokenise(tables)
        return tables

    def _create(self) -> tuple[str, str]:
        tables = self._lookup()
        if tables is not None:
            return tables
        try:
            with self._transaction() as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO lexical_collections (name, terms_version) VALUES (?, ?)",
                    (self.collection, TERMS_VERSION),
                )
                cid = conn.execute(
                    "SELECT id FROM lexical_collections WHERE name = ?", (self.collection,)
                ).fetchone()[0]
                docs, fts = f"lex_docs_{cid}", f"lex_fts_{cid}"
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {docs} (rowid INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE,"
                    " source TEXT NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL)"
                )
                conn.execute(f"CREATE INDEX IF NOT EXISTS {docs}_source ON {docs}(source)")
                # The terms are made by lexical_terms; 'ascii' only splits them on the spaces.
                conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5(terms, tokenize='ascii')")
        except sqlite3.OperationalError as exc:
            if "fts5" in str(exc).lower():
                raise StoreError(
                    f"this Python's SQLite ({sqlite3.sqlite_version}) has no FTS5 full-text search, which the"
                    " keyword index needs. Use a Python built with a standard SQLite (3.9 or later with FTS5)."
                ) from exc
            raise self._error("create", exc) from exc
        self._tables = (docs, fts)
        return self._tables

    def _retokenise(self, tables: tuple[str, str]) -> None:
        docs, fts = tables
        log.info("re-tokenising the keyword index of %r (terms version changed)", self.collection)
        with self._transaction() as conn:
            conn.execute(f"DELETE FROM {fts}")
            rows = conn.execute(f"SELECT rowid, text FROM {docs}").fetchall()
            conn.executemany(
                f"INSERT INTO {fts} (rowid, terms) VALUES (?, ?)",
                [(rowid, " ".join(lexical_terms(text))) for rowid, text in rows],
            )
            conn.execute(
                "UPDATE lexical_collections SET terms_version = ? WHERE name = ?", (TERMS_VERSION, self.collection)
            )

    # -- writes --------------------------------------------------------------------------
    def upsert(
        self, chunks: Sequence[Chunk], *, embedder_id: str = "", extra: Mapping[str, Any] | None = None
    ) -> None:
        """Index knowledge-base chunks (same ids overwrite), with the metadata Chroma gets
        (``extra`` is added to every chunk's, as in ``ChromaStore.upsert``)."""
        self.upsert_records(
            [c.id for c in chunks],
            [c.text for c in chunks],
            [{**c.metadata(embedder_id), **(extra or {})} for c in chunks],
        )

    def upsert_records(
        self, ids: Sequence[str], texts: Sequence[str], metadatas: Sequence[Mapping[str, Any]]
    ) -> None:
        """Index any records (ids, texts, metadata with a ``source``); same ids overwrite."""
        if not len(ids) == len(texts) == len(metadatas):
            raise ValueError(f"{len(ids)} ids, {len(texts)} texts, {len(metadatas)} metadatas")
        if not ids:
            return
        terms = [" ".join(lexical_terms(t)) for t in texts]
        with self._lock:
            docs, fts = self._create()
            try:
                with self._transaction() as conn:
                    self._delete_in(conn, ids)
                    for cid, text, meta, t in zip(ids, texts, metadatas, terms, strict=True):
                        cur = conn.execute(
                            f"INSERT INTO {docs} (chunk_id, source, text, metadata) VALUES (?, ?, ?, ?)",
                            (cid, str(meta.get("source", "")), text, json.dumps(dict(meta), ensure_ascii=False)),
                        )
                        conn.execute(f"INSERT INTO {fts} (rowid, terms) VALUES (?, ?)", (cur.lastrowid, t))
            except sqlite3.Error as exc:
                raise self._error("write to", exc) from exc

    def _delete_in(self, conn: sqlite3.Connection, ids: Iterable[str]) -> int:
        docs, fts = self._tables  # type: ignore[misc]
        ids = list(ids)
        removed = 0
        for start in range(0, len(ids), 500):
            batch = json.dumps(ids[start : start + 500])
            rowids = [
                r[0]
                for r in conn.execute(
                    f"SELECT rowid FROM {docs} WHERE chunk_id IN (SELECT value FROM json_each(?))", (batch,)
                )
            ]
            if rowids:
                conn.executemany(f"DELETE FROM {fts} WHERE rowid = ?", [(r,) for r in rowids])
                conn.executemany(f"DELETE FROM {docs} WHERE rowid = ?", [(r,) for r in rowids])
                removed += len(rowids)
        return removed

    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[Mapping[str, Any]]) -> None:
        """Replace indexed chunks' metadata (and source), keeping their text and terms."""
        if len(ids) != len(metadatas):
            raise ValueError(f"{len(ids)} ids, {len(metadatas)} metadatas")
        with self._lock:
            if not ids or self._lookup() is None:
                return
            docs, _ = self._tables  # type: ignore[misc]
            try:
                with self._transaction() as conn:
                    conn.executemany(
                        f"UPDATE {docs} SET source = ?, metadata = ? WHERE chunk_id = ?",
                        [
                            (str(m.get("source", "")), json.dumps(dict(m), ensure_ascii=False), cid)
                            for cid, m in zip(ids, metadatas, strict=True)
                        ],
                    )
            except sqlite3.Error as exc:
                raise self._error("update", exc) from exc

    def delete(self, ids: Iterable[str]) -> int:
        """Remove chunks by id; returns how many were indexed."""
        ids = list(ids)
        with self._lock:
            if not ids or self._lookup() is None:
                return 0
            try:
                with self._transaction() as conn:
                    return self._delete_in(conn, ids)
            except sqlite3.Error as exc:
                raise self._error("delete from", exc) from exc

    def drop(self) -> bool:
        """Forget the whole collection's index (for --rebuild); True if there was one."""
        with self._lock:
            tables = self._lookup()
            if tables is None:
                return False
            docs, fts = tables
            try:
                with self._transaction() as conn:
                    conn.execute(f"DROP TABLE IF EXISTS {fts}")
                    conn.execute(f"DROP TABLE IF EXISTS {docs}")
                    conn.execute("DELETE FROM lexical_collections WHERE name = ?", (self.collection,))
            except sqlite3.Error as exc:
                raise self._error("drop", exc) from exc
            self._tables = None
            return True

    def sync_with(self, store, *, page: int = 1000) -> int:
        """Make the index hold exactly the chunks of a Chroma store (texts and metadata copied
        from the store, nothing re-embedded); returns how many chunks it added or removed.

        Used to repair the index after a crash, and to build it for a collection ingested
        before the index existed.
        """
        wanted = store.ids()
        have = self.ids()
        extra = have - wanted
        missing = sorted(wanted - have)
        self.delete(extra)
        for start in range(0, len(missing), page):
            records = store.get_records(ids=missing[start : start + page])
            self.upsert_records(
                [h.chunk_id for h in records], [h.text for h in records], [h.metadata for h in records]
            )
        if extra or missing:
            log.info("keyword index of %r: %d chunks added, %d removed", self.collection, len(missing), len(extra))
        return len(extra) + len(missing)

    # -- reads ---------------------------------------------------------------------------
    def count(self) -> int:
        with self._lock:
            tables = self._lookup()
            if tables is None:
                return 0
            return int(self.conn.execute(f"SELECT count(*) FROM {tables[0]}").fetchone()[0])

    def ids(self) -> set[str]:
        with self._lock:
            tables = self._lookup()
            if tables is None:
                return set()
            return {r[0] for r in self.conn.execute(f"SELECT chunk_id FROM {tables[0]}")}

    def sources(self) -> list[str]:
        with self._lock:
            tables = self._lookup()
            if tables is None:
                return []
            return [r[0] for r in self.conn.execute(f"SELECT DISTINCT source FROM {tables[0]}")]

    def term_stats(self, query: str) -> tuple[int, dict[str, int]]:
        """How many chunks the index holds, and in how many of them each of the query's
        terms appears (0 for a term no chunk has)."""
        terms = lexical_terms(query)[:MAX_QUERY_TERMS]
        with self._lock:
            tables = self._lookup()
            if tables is None or not terms:
                return 0, {t: 0 for t in terms}
            n, _ = self._collection_stats(tables)
            return n, self._frequencies(tables, terms)

    def _fresh_stats(self, tables: tuple[str, str]) -> None:
        """Drop cached statistics if another connection wrote since they were read."""
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._df_version:
            self._forget_stats()
            self._df_version = version

    def _collection_stats(self, tables: tuple[str, str]) -> tuple[int, float]:
        """(chunks indexed, their mean length in terms): what ``bm25()`` reads as N and avgdl."""
        self._fresh_stats(tables)
        if self._totals is None:
            docs, fts = tables
            n = int(self.conn.execute(f"SELECT count(*) FROM {docs}").fetchone()[0])
            row = self.conn.execute(f"SELECT block FROM {fts}_data WHERE id = 1").fetchone()
            totals = _varints(row[0]) if row is not None and row[0] else []
            # FTS5's averages record: the row count, then the total tokens of each column. If it
            # cannot be read (another FTS5 format), mean length 0 turns two-step search off.
            avgdl = totals[1] / totals[0] if len(totals) == 2 and totals[0] == n and n else 0.0
            self._totals = (n, avgdl)
        return self._totals

    def _frequencies(self, tables: tuple[str, str], terms: Iterable[str]) -> dict[str, int]:
        """Document frequency of each term (cached until a write)."""
        _, fts = tables
        if self._vocab != fts:
            self.conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{fts}_vocab USING fts5vocab(main, {fts}, row)")
            self._vocab = fts
        self._fresh_stats(tables)
        for term in set(terms) - self._df.keys():
            # One lookup per term: fts5vocab seeks on "term = ?" but scans for IN (...).
            row = self.conn.execute(f"SELECT doc FROM temp.{fts}_vocab WHERE term = ?", (term,)).fetchone()
            self._df[term] = row[0] if row else 0
        return {t: self._df[t] for t in terms}

    def max_score(self, query: str) -> float:
        """The BM25 score a chunk would get by matching every query term as strongly as
        possible: ``sum(idf(t) * (k1 + 1))``. Scores divided by it fall in [0, 1]."""
        terms = lexical_terms(query)[:MAX_QUERY_TERMS]
        n, df = self.term_stats(query)
        total = 0.0
        for t in terms:
            d = df.get(t, 0)
            if d:
                total += max(math.log((n - d + 0.5) / (d + 0.5)), 1e-6) * (BM25_K1 + 1)
        return total

    def term_weights(self, query: str) -> dict[str, float]:
        """Each distinct query term's weight for judging relevance: a smoothed IDF,
        ``log(1 + (n - df + 0.5) / (df + 0.5))``, always above 0. A term no chunk holds gets
        the largest weight: it is usually the question's subject, and nothing here has it."""
        n, df = self.term_stats(query)
        return {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}

    def search(
        self,
        query: str,
        k: int,
        sources: Sequence[str] | None = None,
        *,
        ids: Collection[str] | None = None,
    ) -> list[Hit]:
        """The ``k`` chunks with the highest BM25 score for ``query``, best first.

        Args:
            query: The search text; it is tokenised like the chunks were.
            k: How many hits at most.
            sources: Keep only chunks whose ``source`` is in this list (None: all).
            ids: Keep only chunks with these ids (None: all). A metadata filter is applied
                by asking Chroma which ids it allows (``ChromaStore.ids(where=...)``) and
                passing them here, so the filter is evaluated by Chroma alone and no SQL is
                built from it.

        Returns:
            Hits whose ``score`` is the BM25 score (above 0; higher is better) and whose
            metadata is what the dense store holds for the chunk. A query with no indexable
            term (only stop words, or punctuation) returns no hits.
        """
        ranked = self.rank(query, k, sources, ids=ids)
        found = self.records([cid for cid, _ in ranked])
        return [_scored(found[cid], score) for cid, score in ranked if cid in found]

    def rank(
        self,
        query: str,
        k: int,
        sources: Sequence[str] | None = None,
        *,
        ids: Collection[str] | None = None,
    ) -> list[tuple[str, float]]:
        """``search`` without reading the chunks: (chunk id, BM25 score) pairs, best first."""
        if k <= 0:
            raise ConfigError(f"k must be at least 1, got {k}")
        terms = lexical_terms(query)[:MAX_QUERY_TERMS]
        if not terms or (sources is not None and not sources) or (ids is not None and not ids):
            return []
        with self._lock:
            tables = self._lookup()
            if tables is None:
                return []
            docs, fts = tables
            try:
                if sources is None and ids is None:
                    rows = self._rank_all(tables, terms, int(k))
                else:
                    sql = (
                        f"SELECT {fts}.rowid, -bm25({fts}) AS score FROM {fts}"
                        f" JOIN {docs} AS d ON d.rowid = {fts}.rowid WHERE {fts} MATCH ?"
                    )
                    params: list[Any] = [_match(terms)]
                    if sources is not None:
                        sql += " AND d.source IN (SELECT value FROM json_each(?))"
                        params.append(json.dumps(list(sources)))
                    if ids is not None:
                        sql += " AND d.chunk_id IN (SELECT value FROM json_each(?))"
                        params.append(json.dumps(sorted(ids)))
                    sql += f" ORDER BY score DESC, {fts}.rowid LIMIT ?"
                    params.append(int(k))
                    rows = self.conn.execute(sql, params).fetchall()
                if not rows:
                    return []
                chunk_ids = dict(
                    self.conn.execute(
                        f"SELECT rowid, chunk_id FROM {docs} WHERE rowid IN (SELECT value FROM json_each(?))",
                        (json.dumps([r for r, _ in rows]),),
                    ).fetchall()
                )
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # dropped by another process (a rebuild)
                    self._tables = None
                    return []
                raise self._error("search", exc) from exc
            except sqlite3.Error as exc:
                raise self._error("search", exc) from exc
        return [(chunk_ids[r], float(score)) for r, score in rows if r in chunk_ids]

    def _rank_all(self, tables: tuple[str, str], terms: list[str], k: int) -> list[tuple[int, float]]:
        """(rowid, score) of the ``k`` best chunks of the whole index, best first."""
        _, fts = tables
        df = self._frequencies(tables, terms)
        rare_first = sorted(set(terms), key=lambda t: (df[t], t))
        picked: list[str] = []
        postings = 0
        for term in rare_first:
            if picked and postings + df[term] > self.candidate_postings:
                break
            picked.append(term)
            postings += df[term]
        n, avgdl = self._collection_stats(tables)
        total = sum(df[t] for t in rare_first)
        # Only a query that is mostly CJK characters and pairs is pruned: each character is
        # indexed alone and in two pairs, so a chunk that matters nearly always holds one of the
        # rare ones. English words are not so redundant (see the module docstring).
        mostly_cjk = 2 * sum(map(is_cjk_term, terms)) >= len(terms)
        if total <= self.prune_above or len(picked) == len(rare_first) or avgdl <= 0 or not mostly_cjk:
            return self.conn.execute(
                f"SELECT rowid, -bm25({fts}) AS score FROM {fts} WHERE {fts} MATCH ?"
                " ORDER BY score DESC, rowid LIMIT ?",
                (_match(terms), k),
            ).fetchall()
        candidates = self.conn.execute(
            f"SELECT rowid FROM {fts} WHERE {fts} MATCH ? ORDER BY bm25({fts}), rowid LIMIT ?",
            (_match(picked), 2 * k),
        ).fetchall()
        rows = self.conn.execute(
            f"SELECT rowid, terms FROM {fts} WHERE rowid IN (SELECT value FROM json_each(?))",
            (json.dumps([r for (r,) in candidates]),),
        ).fetchall()
        weights = [_idf(n, df[t]) for t in terms]
        scored = [(rowid, _score(terms, weights, text.split(), avgdl)) for rowid, text in rows]
        scored.sort(key=lambda r: (-r[1], r[0]))
        return [r for r in scored[:k] if r[1] > 0]

    def records(self, ids: Sequence[str]) -> dict[str, Hit]:
        """The indexed chunks with these ids (text and metadata, score 0), by id."""
        if not ids:
            return {}
        with self._lock:
            tables = self._lookup()
            if tables is None:
                return {}
            docs, _ = tables
            try:
                rows = self.conn.execute(
                    f"SELECT chunk_id, text, metadata FROM {docs} WHERE chunk_id IN (SELECT value FROM json_each(?))",
                    (json.dumps(list(ids)),),
                ).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    self._tables = None
                    return {}
                raise self._error("read from", exc) from exc
            except sqlite3.Error as exc:
                raise self._error("read from", exc) from exc
        return {cid: _hit(cid, text, json.loads(meta), 0.0) for cid, text, meta in rows}


def _match(terms: Sequence[str]) -> str:
    # A term said twice is matched twice, so it weighs twice (BM25 over query term counts).
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def _idf(n: int, df: int) -> float:
    """FTS5's idf: ``log((N - df + 0.5) / (df + 0.5))``, or 1e-6 where that is not above 0."""
    idf = math.log((n - df + 0.5) / (df + 0.5))
    return idf if idf > 0.0 else 1e-6


def _score(terms: Sequence[str], weights: Sequence[float], chunk_terms: list[str], avgdl: float) -> float:
    """A chunk's BM25 score for the query ``terms`` (each with its idf in ``weights``),
    computed as FTS5's ``bm25()`` does: one phrase per query term, summed in query order."""
    counts = Counter(chunk_terms)
    norm = BM25_K1 * (1 - BM25_B + BM25_B * len(chunk_terms) / avgdl)
    score = 0.0
    for term, idf in zip(terms, weights, strict=True):
        f = counts.get(term, 0)
        score += idf * ((f * (BM25_K1 + 1.0)) / (f + norm))
    return score


def _varints(data: bytes) -> list[int]:
    """SQLite's variable-length integers, as FTS5 writes them."""
    out: list[int] = []
    i = 0
    while i < len(data):
        value = 0
        for j in range(9):
            if i >= len(data):
                return []
            byte = data[i]
            i += 1
            if j == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        out.append(value)
    return out


def _scored(hit: Hit, score: float) -> Hit:
    return Hit(
        chunk_id=hit.chunk_id, text=hit.text, score=score, source=hit.source, page=hit.page, title=hit.title,
        metadata=hit.metadata,
    )


def _hit(cid: str, text: str, meta: dict[str, Any], score: float) -> Hit:
    return Hit(
        chunk_id=cid,
        text=text,
        score=score,
        source=str(meta.get("source", "")),
        page=meta.get("page"),
        title=meta.get("title"),
        metadata=meta,
    )
