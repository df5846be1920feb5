"""Figures of a retrieval evaluation: hit@k curves per retriever and query-latency histograms.

matplotlib (the ``ragmem[plot]`` extra) is imported on use, with its headless Agg backend, so
plotting works without a display.
"""

from __future__ import annotations

from pathlib import Path

from rag_memory.errors import ConfigError
from rag_memory.eval.retrieval import RetrievalEvalResult

COLOURS = {"dense": "#2f5fd0", "bm25": "#d9822b", "hybrid": "#2e9e5b"}


def check_plot_path(path: Path) -> Path:
    """``path`` if a figure can be written there by its extension (checked before a long run)."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigError(f"--plot writes .png, .svg or .pdf files, got {path}")
    return path


def plot_retrieval(result: RetrievalEvalResult, path: Path) -> Path:
    """Draw ``result`` into ``path`` (PNG, SVG or PDF, by its extension); returns ``path``.

    Left: hit@k for k = 1..10, one line per retrieval mode. Right: each mode's query
    latencies (ms) as a histogram, with its p50 and p95 marked.

    Raises:
        ConfigError: matplotlib is not installed, or the file cannot be written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError(
            "--plot needs matplotlib: pip install 'ragmem[plot]' (./scripts/setup.sh installs it)"
        ) from exc
    path = check_plot_path(path)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for mode, m in result.results.items():
        colour = COLOURS.get(mode)
        ks = sorted(m.curve)
        left.plot(ks, [m.curve[k] for k in ks], marker="o", label=mode, color=colour)
        if m.latencies_ms:
            right.hist(m.latencies_ms, bins=30, alpha=0.5, label=f"{mode} (p50 {m.p50_ms:.1f}, p95 {m.p95_ms:.1f})",
                       color=colour)
            right.axvline(m.p95_ms, color=colour or "black", linestyle="--", linewidth=1)
    left.set(xlabel="k", ylabel="hit@k", ylim=(0, 1.02), xticks=list(range(1, 11)),
             title=f"{result.dataset}: hit@k ({result.questions} questions, {result.passages} passages)")
    left.grid(alpha=0.3)
    left.legend(loc="lower right")
    right.set(xlabel="query latency (ms)", ylabel="questions", title="latency per question (dashed: p95)")
    right.grid(alpha=0.3)
    right.legend(loc="upper right", fontsize="small")
    fig.suptitle(f"ragmem eval retrieval, embedder {result.embedder}", fontsize="medium")
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    except OSError as exc:
        raise ConfigError(f"cannot write the plot to {path}: {exc.strerror}; choose another --plot file") from exc
    finally:
        plt.close(fig)
    return path
