"""The RAG pipeline: question (+ session, user) in; answer, sources and costs out.

    condense follow-up ─► retrieve knowledge (gate) ─► recall long-term memory (gate)
      ─► fuse under the token budget ─► generate (stream) ─► store the turn ─► Answer
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rag_memory.config import Settings
from rag_memory.errors import ConfigError
from rag_memory.faults import checkpoint
from rag_memory.generation.base import ChatMessage, GenerationConfig
from rag_memory.pipelines.components import Components
from rag_memory.pipelines.fusion import PromptFuser
from rag_memory.schema import Answer, Hit, Memory, Turn
from rag_memory.text.language import is_chinese

log = logging.getLogger(__name__)

HISTORY_TURNS = 20  # turns read from the session; fusion keeps what fits
EXTRACTIVE_CONTEXT = 4096  # the notional window used to size what the extractive answer reads

NOTHING_RELEVANT = {
    "en": "The knowledge base has nothing relevant to this question, so I will not guess.",
    "zh": "知识库中没有与这个问题相关的内容，我不做猜测。",
}
NOTED = {"en": "Noted. I will remember that ", "zh": "好的，我记住了："}
_QUESTION = re.compile(
    r"[?？]|^\s*(?:what|who|whom|whose|when|where|why|how|which|is|are|am|was|were|do|does|did|can|could|"
    r"would|will|should|shall|may|might|have|has|tell me|explain|describe|list|show|give me|find)\b|"
    r"什么|谁|哪|几|多少|怎么|如何|为什么|为何|吗|呢|是否|请问|告诉我|介绍|解释",
    re.IGNORECASE,
)


def is_statement(text: str) -> bool:
    """Whether a turn only states things (no question mark, no question word, no request)."""
    return not _QUESTION.search(text)


def acknowledgement(facts: list[str], lang: str) -> str:
    """A short reply naming what was kept, in the user's words' person ("you", "你")."""
    if lang == "zh":
        kept = "；".join(f.rstrip("。").replace("用户的", "你的").replace("用户", "你") for f in facts)
        return f"{NOTED['zh']}{kept}。"
    def second(fact: str) -> str:
        fact = fact.rstrip(".")
        fact = re.sub(r"^The user's\b", "your", fact)
        fact = re.sub(r"^The user asked to remember:\s*", "", fact)
        fact = re.sub(r"^The user (is|was)\b", lambda m: "you " + {"is": "are", "was": "were"}[m.group(1)], fact)
        fact = re.sub(r"^The user (does|has)\b", lambda m: "you " + {"does": "do", "has": "have"}[m.group(1)], fact)
        fact = re.sub(r"^The user (\w+?)s\b", r"you \1", fact)
        return re.sub(r"^The user\b", "you", fact)
    parts = [second(f) for f in facts]
    kept = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{NOTED['en']}{kept}."


class AnswerStream:
    """Iterate to get the answer's text pieces as they are generated; then read ``answer``."""

    def __init__(self, pieces: Iterator[str]) -> None:
        self._pieces = pieces
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        yield from self._pieces


@dataclass
class _Turn:
    """One question, prepared up to generation (``RagPipeline._prepare``)."""

    question: str
    session_id: str
    user_id: str
    config: GenerationConfig
    explain: bool
    gen: Any
    llm: Any  # the LLM that writes the answer; None when ``reply`` is the answer
    store_llm: Any  # the LLM for the turn's bookkeeping (summaries), also when it wrote nothing
    recent: list[Turn]
    standalone: str
    candidates: list[Hit]
    hits: list[Hit]
    memories: list[Memory]
    fused: Any
    notes: list[str]
    timings: dict[str, float]
    abstained: bool
    facts_only: bool
    reply: str | None


class RagPipeline:
    """Knowledge and conversation memory fused into one prompt for a generator.

    Args:
        settings: The effective settings (default: ``Settings.load()``).
        components: The stages; built from ``settings`` when not given (tests pass fakes).

    Example:
        >>> rag = RagPipeline()
        >>> answer = rag.ask("What happens to deleted files on re-ingest?", session_id="s1")
        >>> answer.answer, [s.source for s in answer.sources]
    """

    def __init__(self, settings: Settings | None = None, *, components: Components | None = None) -> None:
        if components is not None and settings is not None and components.settings is not settings:
            raise ConfigError("pass settings or components, not both with different settings")
        self.components = components or Components(settings or Settings.load())
        self.settings = self.components.settings

    # -- public ------------------------------------------------------------------------
    def ingest(
        self,
        paths,
        *,
        include=(),
        exclude=(),
        dry_run: bool = False,
        rebuild: bool = False,
    ):
        """Sync files and folders into the knowledge base, as ``ragmem ingest`` does.

        Returns:
            The ``IngestReport``: files added, updated, removed, unchanged and failed.
        """
        return self.components.ingestor().run(
            list(paths) if not isinstance(paths, str | bytes) else [paths],
            include=include or self.settings.include,
            exclude=exclude or self.settings.exclude,
            dry_run=dry_run,
            rebuild=rebuild,
        )

    def ask(
        self,
        question: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        top_k: int | None = None,
        config: GenerationConfig | None = None,
        explain: bool = False,
        history: Sequence[Turn] | None = None,
    ) -> Answer:
        """Answer ``question`` from the knowledge base and the user's memory; see ``stream``."""
        stream = self.stream(
            question, session_id=session_id, user_id=user_id, top_k=top_k, config=config, explain=explain,
            history=history,
        )
        for _ in stream:
            pass
        assert stream.answer is not None
        return stream.answer

    def stream(
        self,
        question: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        top_k: int | None = None,
        config: GenerationConfig | None = None,
        explain: bool = False,
        history: Sequence[Turn] | None = None,
    ) -> AnswerStream:
        """Answer ``question`` piece by piece.

        Args:
            question: The question as the user typed it.
            session_id: The conversation it belongs to; its recent turns are used and it is
                stored there. ``None`` starts a new one-off session.
            user_id: Whose long-term memory to read and write (default: the ``user`` setting).
            top_k: Knowledge chunks to retrieve (default: the ``top_k`` setting).
            config: Decoding settings (default: from the settings).
            explain: Also collect candidates, scores, the gate and budgets in ``Answer.explain``.
            history: The conversation so far, oldest first, when the caller holds it (an OpenAI
                client sends it with every request); default: the session's stored turns. The
                new turn is stored in the session either way.

        Returns:
            An iterable of text pieces; after it is exhausted, ``.answer`` holds the ``Answer``.
        """
        if not question or not question.strip():
            raise ConfigError("the question is empty; ask something")
        s = self.settings
        config = config or GenerationConfig(max_new_tokens=s.max_new_tokens, temperature=s.temperature)
        stream = AnswerStream(iter(()))
        stream._pieces = self._run(
            question.strip(),
            session_id or f"ask-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
            user_id or s.user,
            top_k or s.top_k,
            config,
            explain,
            None if history is None else list(history),
            stream,
        )
        return stream

    # -- LangChain ---------------------------------------------------------------------
    def as_retriever(self, **options: Any):
        """The knowledge base as a LangChain retriever; options as ``RagRetriever`` takes them
        (``top_k``, ``min_score``, ``source_glob``, ``include_memory``, ``user_id`` ...)."""
        from rag_memory.pipelines.langchain import RagRetriever

        return RagRetriever(pipeline=self, **options)

    def as_runnable(self, *, return_sources: bool = False):
        """The pipeline as an LCEL Runnable: a question (or ``{"question", "session_id",
        "user_id"}``) in, the answer text out, or ``{"answer", "sources"}`` with ``return_sources``."""
        from rag_memory.pipelines.langchain import pipeline_runnable

        return pipeline_runnable(self, return_sources=return_sources)

    def as_chat_model(self):
        """The configured generator as a LangChain chat model (``RagChatModel``)."""
        from rag_memory.generation.select import HOW_TO
        from rag_memory.pipelines.langchain import RagChatModel

        selection = self.components.generation
        if selection.extractive:
            why = "; ".join(selection.notes) or f"the generator setting is 'extractive'. {HOW_TO}"
            raise ConfigError(f"no language model is available to use as a chat model: {why}")
        return RagChatModel(
            generator=selection.generator,
            max_tokens=self.settings.max_new_tokens,
            temperature=self.settings.temperature,
        )

    def as_vectorstore(self):
        """The knowledge base's Chroma collection as a ``langchain_chroma.Chroma`` store."""
        from rag_memory.pipelines.langchain import chroma_vectorstore

        return chroma_vectorstore(self.components)

    def as_embeddings(self):
        """The configured embedder as LangChain ``Embeddings``."""
        from rag_memory.pipelines.langchain import RagEmbeddings

        return RagEmbeddings(self.components.embedder)

    def chat_history(self, session_id: str, user_id: str | None = None):
        """One session of ragmem's chat history as a LangChain ``BaseChatMessageHistory``,
        e.g. for ``RunnableWithMessageHistory``."""
        from rag_memory.memory.langchain_history import SQLiteChatMessageHistory

        return SQLiteChatMessageHistory(self.components.history, user_id or self.settings.user, session_id)

    # -- the run -----------------------------------------------------------------------
    def _run(
        self, question: str, session_id: str, user_id: str, top_k: int, config: GenerationConfig,
        explain: bool, history: list[Turn] | None, out: AnswerStream,
    ) -> Iterator[str]:
        turn = self._prepare(question, session_id, user_id, top_k, config, explain, history)
        pieces: list[str] = []
        started = time.perf_counter()
        if turn.reply is not None:
            pieces.append(turn.reply)
            yield turn.reply
        else:
            for piece in turn.llm.stream(turn.fused.messages, config):
                pieces.append(piece)
                checkpoint("generate")
                yield piece
        turn.timings["generate"] = time.perf_counter() - started
        # Read now: storing the turn may call the same LLM (the summary), overwriting last_usage.
        usage = getattr(turn.llm, "last_usage", None) if turn.reply is None else None
        out.answer = self._finish(turn, "".join(pieces).strip(), usage.completion_tokens if usage else None,
                                  usage.seconds_to_first_token if usage else None)

    def ask_batch(
        self, questions: Sequence[Mapping[str, Any]], *, config: GenerationConfig | None = None
    ) -> list[Answer]:
        """Answer several questions, their answers generated together where the generator can.

        Each question is a mapping of ``ask``'s arguments (``question``, and optionally
        ``session_id``, ``user_id``, ``top_k``). With a generator that has ``generate_batch``
        (the local transformers one), every question is retrieved and fused first and all the
        prompts go through one batched ``generate`` (on a GPU that is nearly the time of one);
        the answers are what one-at-a-time calls give with greedy decoding. Other generators,
        or questions that share a session (a follow-up needs the previous answer stored),
        are answered one after another, exactly as ``ask``.
        """
        s = self.settings
        config = config or GenerationConfig(max_new_tokens=s.max_new_tokens, temperature=s.temperature)
        requests = [dict(q) for q in questions]
        for request in requests:
            if not isinstance(request.get("question"), str) or not request["question"].strip():
                raise ConfigError(f"the question is empty; ask something (got {request.get('question')!r})")
        sessions = [r.get("session_id") for r in requests if r.get("session_id")]
        selection = self.components.generation
        batch = None if selection.extractive else getattr(selection.generator, "generate_batch", None)
        if batch is None or len(requests) < 2 or len(set(sessions)) < len(sessions):
            return [self.ask(**r, config=config) for r in requests]
        turns = [
            self._prepare(
                r["question"].strip(),
                r.get("session_id") or f"ask-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
                r.get("user_id") or s.user, r.get("top_k") or s.top_k, config, False, None,
            )
            for r in requests
        ]
        to_generate = [t for t in turns if t.reply is None]
        started = time.perf_counter()
        texts = batch([t.fused.messages for t in to_generate], config) if to_generate else []
        elapsed = time.perf_counter() - started
        generated = dict(zip(map(id, to_generate), texts, strict=True))
        answers = []
        for turn in turns:
            turn.timings["generate"] = elapsed if turn.reply is None else 0.0
            text = (turn.reply if turn.reply is not None else generated[id(turn)]).strip()
            completion = turn.llm.count_tokens(text) if turn.reply is None else None
            answers.append(self._finish(turn, text, completion, None))
        return answers

    def _prepare(
        self, question: str, session_id: str, user_id: str, top_k: int, config: GenerationConfig,
        explain: bool, history: list[Turn] | None,
    ) -> _Turn:
        """Everything before generation: history, condensing, retrieval, recall, fusion."""
        from rag_memory.memory.condense import condense_question
        from rag_memory.memory.facts import extract_facts

        parts = self.components
        s = self.settings
        timings: dict[str, float] = {}
        lang = "zh" if is_chinese(question) else "en"

        with _timed(timings, "load_generator"):
            selection = parts.generation
        gen = selection.generator
        llm = None if selection.extractive else gen

        with _timed(timings, "history"):
            if history is None:
                recent = parts.memory.history(user_id, session_id, limit=HISTORY_TURNS)
                stored_summary = parts.memory.summary(user_id, session_id)
            else:
                recent, stored_summary = history[-HISTORY_TURNS:], None
        with _timed(timings, "condense"):
            rewrite = (lambda prompt: llm.generate([ChatMessage("user", prompt)], GenerationConfig(64))) if llm else None
            standalone = condense_question(question, recent, rewrite=rewrite)
        with _timed(timings, "retrieve"):
            candidates = parts.retriever.retrieve(standalone, top_k=top_k)
            hits = [h for h in candidates if relevant(h, s.relevance_gate)]
        with _timed(timings, "recall"):
            memories: list[Memory] = []
            if s.memory_top_k:
                # This session's own turns are in the recent window already; memories never
                # take more than their share of the model's context.
                window = llm.context_length if llm is not None else EXTRACTIVE_CONTEXT
                budget = min(s.memory_budget_tokens, int(window * s.memory_context_share))
                memories = parts.memory.recall(user_id, standalone, exclude_session=session_id, budget_tokens=budget)
            about = parts.memory.about(user_id, standalone) if memories else []

        facts = extract_facts(question)
        with _timed(timings, "fuse"):
            if llm is not None:
                fuser = PromptFuser(
                    llm.count_message_tokens, llm.count_tokens,
                    context_length=llm.context_length, max_new_tokens=config.max_new_tokens,
                )
            else:
                from rag_memory.generation.openai_compatible import approximate_tokens

                fuser = PromptFuser(
                    lambda msgs: sum(approximate_tokens(m.content) + 4 for m in msgs), approximate_tokens,
                    context_length=EXTRACTIVE_CONTEXT, max_new_tokens=config.max_new_tokens,
                )
            fused = fuser.fuse(
                question,
                hits=hits,
                memories=memories,
                recent=recent,
                summary=stored_summary[0] if stored_summary else None,
                about=about,
            )

        notes = list(selection.notes)
        # A turn that only tells us something ("my project is called Zephyr") is acknowledged,
        # whatever the knowledge base holds on its words.
        statement = bool(facts) and is_statement(question)
        abstained = not statement and not hits and not memories
        if not statement and not abstained and not fused.sources:
            notes.append(
                f"the prompt had no room for any retrieved source within the model's {fuser.context_length}-token"
                " context after the instructions, recent turns and question; lower --max-new-tokens or use a"
                " model with a longer context"
            )
            abstained = True
        reply = None  # the answer when no LLM writes it
        if statement:
            reply = acknowledgement(facts, lang)
        elif abstained:
            reply = acknowledgement(facts, lang) if facts else NOTHING_RELEVANT[lang]
        elif llm is None:
            reply = gen.answer(standalone, fused.sources)
        return _Turn(
            question=question, session_id=session_id, user_id=user_id, config=config, explain=explain, gen=gen,
            llm=llm if reply is None else None, store_llm=llm, recent=recent, standalone=standalone,
            candidates=candidates, hits=hits, memories=memories, fused=fused, notes=notes, timings=timings,
            abstained=abstained, facts_only=statement or abstained or llm is None, reply=reply,
        )

    def _finish(
        self, turn: _Turn, answer_text: str, completion: int | None, first_token: float | None
    ) -> Answer:
        """Store the turn and build its ``Answer``."""
        timings, llm, fused, config = turn.timings, turn.store_llm, turn.fused, turn.config
        with _timed(timings, "store"):
            self._store(turn.user_id, turn.session_id, turn.question, answer_text, turn.facts_only, turn.recent,
                        fused.history, llm)

        answer = Answer(
            answer=answer_text,
            question=turn.question,
            standalone_question=turn.standalone,
            user_id=turn.user_id,
            session_id=turn.session_id,
            sources=fused.sources,
            generator={"backend": turn.gen.backend, "model": turn.gen.model_id},
            abstained=turn.abstained,
            tokens={
                "prompt": fused.prompt_tokens if llm is not None else None,
                "max_new_tokens": config.max_new_tokens,
                "context_length": llm.context_length if llm is not None else None,
                "completion": completion,
            },
            timings=timings,
            notes=turn.notes,
        )
        if first_token is not None:
            timings["first_token"] = first_token
        if turn.explain:
            answer.explain = self._explain(turn.candidates, turn.hits, turn.memories, fused, turn.standalone)
        return answer

    def _store(self, user_id, session_id, question, answer, facts_only, recent, kept, llm) -> None:
        from rag_memory.memory.summarise import summarise_turns

        memory = self.components.memory
        # Every user turn is a memory unit; the answer joins it only when a language model
        # wrote it (an abstention or an extract adds nothing a later session could not
        # retrieve again).
        memory.remember_turn(user_id, session_id, question, answer=answer, answer_is_memory=not facts_only)
        checkpoint("memory")
        # Turns that no longer fit the window are folded into the session's running summary.
        kept_ids = {t.id for t in kept}
        fell_out = [t for t in recent if t.id not in kept_ids]
        previous = memory.summary(user_id, session_id)
        upto = previous[1] if previous else 0
        new = [t for t in fell_out if t.id is not None and t.id > upto]
        if new:
            generate = None
            if llm is not None:
                def generate(prompt: str) -> str:
                    return llm.generate([ChatMessage("user", prompt)], GenerationConfig(160))
            summary = summarise_turns(new, previous=previous[0] if previous else None, generate=generate)
            if summary:
                memory.set_summary(user_id, session_id, summary, max(t.id for t in new))

    def _explain(self, candidates: list[Hit], hits: list[Hit], memories: list[Memory], fused, standalone) -> dict[str, Any]:
        passed = {h.chunk_id for h in hits}
        injected = {s.chunk_id for s in fused.sources}
        return {
            "standalone_question": standalone,
            "gate": {"knowledge": self.settings.relevance_gate, "memory": self.settings.memory_min_score},
            "chunks": [
                {"chunk_id": h.chunk_id, "source": h.source, "page": h.page, "score": round(h.score, 4),
                 "dense_score": _round(h.metadata.get("dense_score")),
                 "bm25_score": _round(h.metadata.get("bm25_score")),
                 "rerank_score": _round(h.metadata.get("rerank_score")),
                 "passed_gate": h.chunk_id in passed, "injected": h.chunk_id in injected}
                for h in candidates
            ],
            "memories": [
                {"id": m.id, "kind": m.kind, "created_at": m.created_at, "similarity": round(m.similarity, 4),
                 "score": round(m.score, 4), "injected": m.id in injected, "text": m.text}
                for m in memories
            ],
            "budget": {"limit": fused.limit, "prompt_tokens": fused.prompt_tokens,
                       "sections": {k: v.as_json() for k, v in fused.sections.items()}},
            "recent_turns": len(fused.history),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def relevant(hit: Hit, gate: float) -> bool:
    """The relevance gate: a hybrid hit passes on BM25 match strength or on cosine similarity
    (where the embedder reads the question's language); a plain dense hit on its cosine."""
    if "bm25_match" in hit.metadata or "dense_score" in hit.metadata:
        from rag_memory.knowledge_base.hybrid import passes_gate

        return passes_gate(hit, gate)
    return hit.score >= gate


@contextmanager
def _timed(timings: dict[str, float], name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
