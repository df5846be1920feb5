"""``python -m rag_memory.cli`` runs the ``ragmem`` command."""

from rag_memory.cli.app import app

app(prog_name="ragmem")
