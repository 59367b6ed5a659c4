"""How this book was built: the profile and its overrides, the run folder, the package versions, the machine, and
the wall time of every chapter (papermill's `duration` in each executed notebook of the run)."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pandas as pd

from ...core.machine import cpu_model
from ...core.paths import shown
from ...config.profile import load_profile
from ..publish import Chapter

# (distribution, what it is): the versions the page lists
PACKAGES = [("universal-neurons", "this project"), ("torch", "tensors, models"),
            ("transformer-lens", "hooked models"), ("numpy", "arrays"), ("pandas", "tables"),
            ("jupyter-book", "the book"), ("myst-nb", "notebook pages, glue"), ("papermill", "notebook execution"),
            ("jupytext", "notebooks as text"), ("sphinx", "the book's builder")]
SKIP = (".in.ipynb", ".tmp.ipynb")  # papermill's input and partial output beside the executed notebooks


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions_table(packages=PACKAGES) -> pd.DataFrame:
    rows = [{"package": "python", "version": platform.python_version(), "role": "the interpreter"}]
    rows += [{"package": d, "version": version(d), "role": role} for d, role in packages]
    return pd.DataFrame(rows).set_index("package")


def memory_gib(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    """Total memory in GiB (from /proc/meminfo), None where it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def gpus() -> list[str]:
    """The CUDA devices torch sees, with their memory; empty without one."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append(f"{p.name} ({p.total_memory / 2**30:.0f} GiB)")
    return out


def machine_table() -> pd.DataFrame:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem = memory_gib()
    g = gpus()
    rows = {"CPU": cpu_model(), "cores": f"{os.cpu_count()} ({usable} usable by this process)",
            "memory": f"{mem:.1f} GiB" if mem is not None else "unknown",
            "GPU": "; ".join(g) if g else "none (CUDA not available)",
            "system": f"{platform.system()} {platform.release()} ({platform.machine()})",
            "threads (OMP_NUM_THREADS)": os.environ.get("OMP_NUM_THREADS", "not set")}
    return pd.DataFrame({"value": rows}).rename_axis("machine")


def executed(folder: Path, skip=("execution",)) -> list[Path]:
    """The executed notebooks of a run folder (papermill's inputs and partial outputs left out, and `skip`)."""
    return sorted(p for p in Path(folder).glob("*.ipynb") if not p.name.endswith(SKIP) and p.stem not in skip)


def _utc(stamp: str | None) -> str:
    """papermill's ISO time as "YYYY-MM-DD HH:MM:SS" (UTC)."""
    if not stamp:
        return ""
    try:
        return datetime.fromisoformat(stamp).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp


def timing_table(folder: Path, skip=("execution",)) -> pd.DataFrame:
    """Per executed notebook, in the order they ran: its wall time (papermill's `duration`, seconds), when it
    started (UTC), the parameters it ran with and whether it failed."""
    rows = []
    for nb in executed(folder, skip):
        pm = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {})
        params = pm.get("parameters", {})
        rows.append({"chapter": nb.stem, "seconds": pm.get("duration"), "started (UTC)": _utc(pm.get("start_time")),
                     "parameters": " ".join(f"{k}={v!r}" for k, v in sorted(params.items())) or "none recorded",
                     "failed": bool(pm.get("exception"))})
    cols = ["chapter", "seconds", "started (UTC)", "parameters", "failed"]
    t = pd.DataFrame(rows, columns=cols).sort_values(["started (UTC)", "chapter"], ignore_index=True)
    return t.set_index("chapter")


def span_seconds(folder: Path, skip=("execution",)) -> float:
    """Seconds from the first executed notebook's start to the last one's end (papermill's start_time and
    end_time): the notebooks' wall time as a whole, below the sum of their times when they ran side by side."""
    starts, ends = [], []
    for nb in executed(folder, skip):
        pm = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {})
        try:
            start, end = datetime.fromisoformat(pm["start_time"]), datetime.fromisoformat(pm["end_time"])
        except (KeyError, TypeError, ValueError):
            continue
        starts.append(start)
        ends.append(end)
    return (max(ends) - min(starts)).total_seconds() if starts else 0.0


def run_table(prof, device: str, now: datetime) -> pd.DataFrame:
    rows = {"profile": prof.name, "description": prof.cfg.get("description", ""),
            "overrides (SET)": " ".join(prof.overrides) or "none", "device": device,
            "run folder": shown(prof.root), "configuration": shown(prof.root / "config.yaml"),
            "executed notebooks": shown(prof.notebooks_dir),
            "this page executed (UTC)": now.strftime("%Y-%m-%d %H:%M")}
    return pd.DataFrame({"value": rows}).rename_axis("run")


def compute(profile="smoke", device="cpu", overrides="") -> Chapter:
    """The run, the versions, the machine and every chapter's wall time, read from the run folder's notebooks."""
    prof = load_profile(profile, overrides)
    now = datetime.now(timezone.utc)
    times = timing_table(prof.notebooks_dir)
    secs = pd.to_numeric(times["seconds"], errors="coerce")
    machine = machine_table()
    slowest = secs.idxmax() if secs.notna().any() else "none"
    glue = {"exe_run": prof.run_name, "exe_profile": prof.name, "exe_overrides": " ".join(prof.overrides) or "none",
            "exe_device": device, "exe_date": now.strftime("%Y-%m-%d"), "exe_time": now.strftime("%H:%M"),
            "exe_n_chapters": len(times), "exe_total_s": float(secs.sum()), "exe_total_min": float(secs.sum()) / 60,
            "exe_span_min": span_seconds(prof.notebooks_dir) / 60,
            "exe_slowest": slowest, "exe_slowest_s": float(secs.max()) if secs.notna().any() else 0.0,
            "exe_cpu": machine.loc["CPU", "value"], "exe_cores": os.cpu_count() or 0,
            "exe_gpu": machine.loc["GPU", "value"], "exe_torch": version("torch"),
            "exe_n_failed": int(times["failed"].sum())}
    tables = {"run": run_table(prof, device, now), "versions": versions_table(), "machine": machine,
              "chapters": times}
    return Chapter("execution", prof, glue=glue, tables=tables, data={"folder": prof.notebooks_dir, "now": now})
