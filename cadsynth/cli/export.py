"""`cads export` and `report`: a run's samples as a data set folder, or as one page to browse."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from cadsynth.cli.app import DEFAULT_DB, DataOption, DbOption, RunArgument, checked, console, fail, first_line, read, require_run


FORMAT_HELP = (
    "jsonl (with provenance), llava, sharegpt (LLaMA-Factory), parquet or hf (a `datasets` folder); for RL, "
    "verl, easyr1 or trl (Parquet, with reward.py)"
)


def export(
    run_name: RunArgument,
    out: Annotated[Path, typer.Option("--out", help="Folder to write: the data and its images, movable as a whole")],
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "jsonl",
    include: Annotated[
        str, typer.Option("--include", help="kept (C >= 1), adversarial (1 <= C <= K-1) or all (every judged problem)")
    ] = "kept",
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help="Replace an earlier export at --out")] = False,
    license_id: Annotated[
        str, typer.Option("--license", help="Licence id for the dataset card of parquet, hf and the RL formats (e.g. cc-by-4.0)")
    ] = "other",
    split_spec: Annotated[
        str | None,
        typer.Option("--split", metavar="SPLITS", help="verl, easyr1, trl: e.g. train=0.9,val=0.05,test=0.05; "
                     "near twins, one image's and one seed's samples stay in one split"),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of --split (default: the run's seed)")] = None,
    push_to_hub: Annotated[
        str | None, typer.Option("--push-to-hub", metavar="REPO", help="parquet or hf: also upload to this Hub data set")
    ] = None,
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
) -> None:
    """Write a run's samples as a folder a training framework loads, images beside them (or inside)."""
    from cadsynth import exports, rl_exports, splits
    from cadsynth.samples import INCLUDE, MissingImagesError, require_images
    from cadsynth.store.blobs import BlobStore

    if fmt not in exports.FORMATS:
        fail(f"--format {fmt!r} is not one we write; use one of {', '.join(exports.FORMATS)}")
    if include not in INCLUDE:
        fail(f"--include {include!r}: use one of {', '.join(INCLUDE)}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]{0,63}", license_id):
        fail(f"--license {license_id!r}: give a Hub licence id in lower case, e.g. cc-by-4.0, apache-2.0 or other")
    shares = None
    if split_spec is not None:
        if fmt not in rl_exports.FORMATS:
            fail(f"--split {split_spec!r}: only the RL formats are split ({', '.join(rl_exports.FORMATS)}), not {fmt}")
        try:
            shares = splits.parse(split_spec)
        except splits.SplitError as exc:
            fail(str(exc))
    elif seed is not None:
        fail(f"--seed {seed}: it seeds --split; give --split too, or leave --seed out")
    token = None
    if push_to_hub is not None:
        if fmt not in exports.HUB_FORMATS:
            fail(f"--push-to-hub {push_to_hub!r}: the Hub takes --format parquet or hf, not {fmt}")
        why = exports.check_repo(push_to_hub)
        if why:
            fail(f"--push-to-hub {push_to_hub!r} is not a repository id ({why}); give NAME or OWNER/NAME")
        token = exports.hub_token()
        if not token:
            fail(f"--push-to-hub {push_to_hub!r}: no Hugging Face token; set HF_TOKEN or run `hf auth login`, then try again")
    checked(lambda checks: checks.output(out, overwrite=overwrite))
    why = exports.not_an_export(out)
    if why is not None:
        fail(f"--out {str(out)!r} {why}; name another folder")
    require_run(db, run_name)
    found = read(db, lambda ledger: exports.gather(ledger, run_name, include, card=fmt in exports.CARD_FORMATS))
    blobs = BlobStore(data)
    try:
        require_images(found.chosen, blobs)
    except MissingImagesError as exc:
        fail(f"--data {str(data)!r}: {exc}")
    split = exports.split(found, blobs, shares, seed) if shares else None
    n = exports.write(found, fmt, out, blobs, overwrite=overwrite, license_id=license_id, split=split)
    sizes = f"; {', '.join(f'{k} {v}' for k, v in split.sizes().items())}" if split else ""
    console.print(f"wrote {n} samples to {out} ({fmt}{sizes})", markup=False)
    if push_to_hub is not None and token is not None:
        try:
            url = exports.push(out, fmt, push_to_hub, token)
        except Exception as exc:  # the network or the Hub: the export itself is done and stays
            fail(f"--push-to-hub {push_to_hub!r}: the upload failed ({first_line(exc)}); the export is at {out}", code=1)
        console.print(f"pushed to {url}", markup=False)


def report(
    run_name: RunArgument,
    out: Annotated[Path, typer.Option("--out", help="HTML file to write: one page, no network needed to open it")],
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help="Replace an existing file at --out")] = False,
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
) -> None:
    """Write a page to browse a run: summary, plots per round, the context's changes, every sample."""
    from cadsynth import run_report
    from cadsynth.samples import MissingImagesError, require_images
    from cadsynth.store.blobs import BlobStore

    checked(lambda checks: checks.output_file(out, overwrite=overwrite))
    if out.exists() and not run_report.is_report(out):
        fail(f"--out {str(out)!r} is not a cadsynth report, and only one is replaced; name another file")
    require_run(db, run_name)
    gathered = read(db, lambda ledger: run_report.gather(ledger, run_name))
    blobs = BlobStore(data)
    try:
        require_images(gathered.samples, blobs)
    except MissingImagesError as exc:
        fail(f"--data {str(data)!r}: {exc}")
    size = run_report.write(gathered, blobs, out)
    console.print(f"wrote {out} ({size / 2**20:.1f} MiB, {len(gathered.samples)} samples)", markup=False)


