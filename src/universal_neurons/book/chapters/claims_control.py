"""The negative control of the claims page: the same chapters run on untrained models of the zoo's shape and
tokenizer (`analysis.untrained=true`, a run folder of its own). An untrained network has no learned function, so
none of the paper's claims may hold on it. Its glued values are read from that run folder when it was built here
(`make control`), else from the shipped `results/claims-control-<run>.json` (written by `--ship`, with provenance
and a checksum), else the column says it was not run.

    python -m universal_neurons.book.chapters.claims_control --profile default --ship
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ...core.atomic import write_text
from ...core.checksum import files_sha256
from ...config.profile import load_profile
from ...core.paths import project_dir
from ...core.errors import UserError
from ...core.machine import cpu_model
from .notebook_reading import glued, shown

CONTROL_SET = "analysis.untrained=true"
# the chapters whose claims the page judges (the claims page's CLAIMS name them too; a test checks both agree)
CHAPTERS = ("universality", "robustness", "properties", "families", "prediction", "entropy", "attention",
            "mysteries")
NOT_RUN = "not run"
CODE = ("measures/verdicts.py", *(f"book/chapters/{c}.py" for c in CHAPTERS))  # the code whose change makes a shipped control old


@dataclass
class Control:
    """The control's glued values (chapter -> {key: raw text}) and where they come from, in words."""

    glue: dict[str, dict[str, str]]
    source: str
    current: bool = True  # False: a shipped control computed with other chapter code than today's

    def verdict(self, chapter: str, key: str) -> str:
        raw = self.glue.get(chapter, {}).get(key)
        return NOT_RUN if raw is None else shown(raw)


def control_profile(prof):
    """The profile of `prof`'s negative control (its overrides plus CONTROL_SET: a run folder of its own), or None
    for a control itself."""
    if prof.untrained:
        return None
    cfg = copy.deepcopy(prof.cfg)
    cfg.setdefault("analysis", {})["untrained"] = True
    return dataclasses.replace(prof, cfg=cfg, overrides=(*prof.overrides, CONTROL_SET))


def shipped_path(prof) -> Path:
    return project_dir() / "results" / f"claims-control-{prof.run_name}.json"


def code_signature() -> str:
    """sha256 over the chapters' and the protocol's source: what the control's verdicts were computed with."""
    return files_sha256(Path(__file__).resolve().parents[2], CODE)


def _checksum(glue: dict) -> str:
    return hashlib.sha256(json.dumps(glue, sort_keys=True).encode()).hexdigest()


def load(prof, chapters=CHAPTERS) -> Control | None:
    """The control of `prof`: computed here (its run folder's notebooks), else shipped, else None."""
    cp = control_profile(prof)
    if cp is None:
        return None
    notebooks = {c: Path(cp.notebooks_dir) / f"{c}.ipynb" for c in chapters}
    here = {c: glued(p) for c, p in notebooks.items() if p.is_file()}
    if here:
        return Control(here, f"computed in this build, run folder artifacts/{cp.run_name}")
    path = shipped_path(prof)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if _checksum(record["glue"]) != record["sha256"]:
        raise UserError(f"{path} does not match its checksum (edited or damaged); restore it with git checkout, or "
                        f"recompute it: make control PROFILE={prof.name} SHIP=1")
    return Control(record["glue"], f"shipped in results/{path.name}, computed {record['date']} at commit "
                   f"{record['commit'][:10]} on {record['cpu']}", record["code"] == code_signature())


def describe(control: Control | None, prof) -> str:
    """Where the page's control column comes from, and how to recompute it."""
    if control is None:
        return ("The negative control was not run for this profile: `make control PROFILE="
                f"{prof.name}` runs the chapters on untrained models of the same shape and fills the column.")
    text = (f"The control column gives each claim's verdict on untrained models of the same shape and tokenizer "
            f"(the same chapters with `{CONTROL_SET}`), {control.source}. An untrained network has no learned "
            "function: a claim that held on it would be noise read as a finding.")
    if not control.current:
        text += (" The chapters' code has changed since it was computed, so the column may judge by older rules; "
                 f"`make control PROFILE={prof.name} SHIP=1` recomputes it.")
    return text


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def ship(prof, chapters=CHAPTERS) -> Path:
    """Copy the control's glued values from its run folder into results/claims-control-<run>.json."""
    cp = control_profile(prof)
    if cp is None:
        raise UserError(f"profile {prof.name!r} is itself a negative control; ship the control of the trained run")
    missing = [c for c in chapters if not (Path(cp.notebooks_dir) / f"{c}.ipynb").is_file()]
    if missing:
        raise UserError(f"the control run folder {cp.notebooks_dir} lacks {', '.join(missing)}; run "
                        f"`make control PROFILE={prof.name}` first")
    glue = {c: {k: v for k, v in glued(Path(cp.notebooks_dir) / f"{c}.ipynb").items() if v != "<figure>"}
            for c in chapters}
    record = {"profile": prof.name, "run": cp.run_name, "command": f"make control PROFILE={prof.name} SHIP=1",
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "commit": _git("rev-parse", "HEAD"),
              "cpu": cpu_model(), "code": code_signature(), "sha256": _checksum(glue), "glue": glue}
    path = shipped_path(prof)
    write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="ship the negative control's glued values into results/")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--set", dest="overrides", default="")
    ap.add_argument("--ship", action="store_true", help="write results/claims-control-<run>.json")
    args = ap.parse_args(argv)
    prof = load_profile(args.profile, args.overrides)
    if args.ship:
        print(ship(prof))
    else:
        print(describe(load(prof), prof))
    return 0


if __name__ == "__main__":
    from ...core.cli import one_line_errors

    raise SystemExit(one_line_errors(main)())
