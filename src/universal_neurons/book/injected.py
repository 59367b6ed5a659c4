"""Papermill's injected-parameters cell, tagged off the page after a chapter is executed (the Makefile's step after
papermill, a light module: it imports no model code)."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.atomic import write_text


def remove_injected_parameters(notebook) -> None:
    """Tag papermill's injected-parameters cell `remove-cell` in an executed notebook, in place: the page opens
    with prose and numbers; the values stay in the notebook file (and in the run's config.yaml)."""
    path = Path(notebook)
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":  # python -m universal_neurons.book.injected NOTEBOOK...: used by the Makefile after papermill
    import sys

    for arg in sys.argv[1:]:
        remove_injected_parameters(arg)
