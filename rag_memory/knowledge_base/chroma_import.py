"""Import chromadb once, without the parts ragmem never uses.

``import chromadb`` loads nearly all of the library: every one of its embedding functions
(with jsonschema and their HTTP clients), the OpenTelemetry gRPC span exporter, httpx's
command-line tool, and, through
the ``overrides`` package, a signature check of every ``@override`` method that disassembles
bytecode as each class is defined. That was half of a ``ragmem search`` process's start-up
(``benchmarks/cold_start.py``). ragmem never lets Chroma embed and never exports traces, and
the signature checks are a development-time lint that Chroma's own test suite runs.

``import_chromadb`` therefore imports chromadb with

* the embedding-function registry, the OTLP exporter and httpx's command-line tool stood in
  for by lazy stand-ins: the names bound from them at import time load the real module on
  first use (a collection configured with a Chroma embedding function, or an OTLP endpoint,
  still works: it just pays the import then), and the stand-in modules are removed again, so
  a later ``import`` of any of them gets the real module;
* ``overrides``' signature checks skipped while chromadb's classes are defined (only then:
  the check is restored before the function returns, for any other code that uses it).

If the fast path fails in any way (a chromadb release that imports these differently), it
falls back to the plain import, so the worst case is the old start-up time. Every module
that touches chromadb imports it through here first (``from chromadb.x import y`` runs
chromadb's ``__init__`` too).
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import types
from typing import Any

log = logging.getLogger(__name__)

# Modules chromadb imports at import time but ragmem's use of it does not need: Chroma's
# embedding functions, the OTLP trace exporter, and httpx's command-line tool (click, pygments
# and rich's progress bars and tables; httpx itself is needed).
DEFERRED = (
    "chromadb.utils.embedding_functions",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "httpx._main",
)

_LOCK = threading.RLock()


def import_chromadb() -> types.ModuleType:
    """The ``chromadb`` module, imported (once per process) without its unused parts."""
    module = sys.modules.get("chromadb")
    if module is not None:  # (mid-import on another thread, Python's import lock waits for it)
        return module
    with _LOCK:
        module = sys.modules.get("chromadb")
        if module is not None:
            return module
        try:
            return _fast_import()
        except Exception:  # noqa: BLE001 - any surprise here only costs speed
            log.debug("the fast chromadb import failed; importing it plainly", exc_info=True)
            for name in [m for m in sys.modules if m == "chromadb" or m.startswith("chromadb.")]:
                del sys.modules[name]
            _remove_stand_ins()
            import chromadb

            return chromadb


def _fast_import() -> types.ModuleType:
    placed = [name for name in DEFERRED if name not in sys.modules]
    for name in placed:
        sys.modules[name] = _StandIn(name)
    try:
        with _signature_checks_off():
            import chromadb  # a statement, not importlib.import_module: -X importtime reports it

            return chromadb
    finally:
        _remove_stand_ins()


def _remove_stand_ins() -> None:
    for name in DEFERRED:
        if isinstance(sys.modules.get(name), _StandIn):
            del sys.modules[name]
        parent, _, child = name.rpartition(".")
        package = sys.modules.get(parent)
        if package is not None and isinstance(package.__dict__.get(child), _StandIn):
            delattr(package, child)


class _signature_checks_off:
    """Make ``overrides.override`` only mark the method (what it does after its checks)."""

    def __enter__(self) -> None:
        self.module = None
        try:
            import overrides  # noqa: F401 - loads overrides.overrides

            module = sys.modules["overrides.overrides"]
            self.original = module._overrides
        except (ImportError, KeyError, AttributeError):
            return
        self.module = module

        def mark_only(method: Any, check_signature: bool, check_at_runtime: bool) -> Any:
            method.__override__ = True
            return method

        module._overrides = mark_only

    def __exit__(self, *exc: object) -> None:
        if self.module is not None:
            self.module._overrides = self.original


class _StandIn(types.ModuleType):
    """A module whose every attribute is a ``_Lazy`` of the real module's attribute."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Lazy(self.__name__, name)


class _Lazy:
    """Forwards calls, item access and attributes to ``module.name``, imported on first use."""

    def __init__(self, module: str, name: str) -> None:
        self._module, self._name = module, name

    def _target(self) -> Any:
        module = sys.modules.get(self._module)
        if module is None or isinstance(module, _StandIn):
            with _LOCK:
                if isinstance(sys.modules.get(self._module), _StandIn):
                    del sys.modules[self._module]
                module = importlib.import_module(self._module)
        return getattr(module, self._name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target()(*args, **kwargs)

    def __getitem__(self, key: Any) -> Any:
        return self._target()[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._target()

    def __iter__(self):
        return iter(self._target())

    def __len__(self) -> int:
        return len(self._target())

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._target(), attr)

    def __repr__(self) -> str:
        return f"<lazy {self._module}.{self._name}>"
