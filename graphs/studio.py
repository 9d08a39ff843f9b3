"""Entry points for `langgraph dev` and LangGraph Studio (named in langgraph.json).

The server loads this file by path; everything it needs comes from the installed package, and
the database from $CADS_DB, so Studio and the CLI see the same runs.
"""

from cadsynth.graphs.debate import graph
from cadsynth.store import open_checkpointer as checkpointer

__all__ = ["checkpointer", "graph"]
