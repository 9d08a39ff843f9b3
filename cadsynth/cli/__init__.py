"""`cads`: run a debate, and read what it produced.

Every command checks its paths, URLs, ids, rounds and options before it writes anything: a bad
value is one line on stderr that names it and says what to do, exit status 2. A run that fails
(an unreachable model endpoint, a rejected key, anything unexpected) is marked failed with its
one-line reason and exits 1. The heavy parts (LangGraph, the model clients) are imported inside
the commands that use them, so `cads --help` and the readers start at once.

`app` holds the typer app, the shared options and the one-line errors; each group of commands has
a module of its own, registered here in the order `cads --help` lists them.
"""

from __future__ import annotations

from cadsynth.cli import check, export, review, run, studio, views
from cadsynth.cli.app import app, invoke, main

app.command()(check.check)
app.command()(run.run)
app.command()(run.resume)
app.command()(review.review)
app.command()(run.replay)
app.command()(views.runs)
app.command()(views.show)
app.command("stats")(views.stats_cmd)
app.command()(export.export)
app.command()(export.report)
app.command()(studio.studio)

__all__ = ["app", "invoke", "main"]
