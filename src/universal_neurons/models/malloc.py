"""A faster malloc for training on a CPU: tcmalloc, preloaded into the processes that train.

glibc hands the large per-step buffers (the logits, tens of MB) back to the kernel every step and
pays for it in page faults; tcmalloc keeps them. Same arithmetic, so the same bytes (tested), and
about 1.2x the tokens/s of two one-thread seeds side by side (`make bench-train`). `make env` fetches
Debian's libtcmalloc-minimal4 into the virtual environment when the system lacks it; without it
training runs with glibc, only slower. `UN_MALLOC=off` turns it off, `UN_MALLOC=<path>` names another.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LIB = "libtcmalloc_minimal.so.4"
SYSTEM_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
DEBIAN_PACKAGE = "libtcmalloc-minimal4"


def venv_lib() -> Path:
    return Path(sys.prefix) / "lib" / LIB


def find() -> str | None:
    """The tcmalloc library to preload: `UN_MALLOC` if set, the virtual environment's, the system's, or None."""
    chosen = os.environ.get("UN_MALLOC", "")
    if sys.platform != "linux" or chosen.lower() in ("off", "none", "glibc"):
        return None
    candidates = [Path(chosen)] if chosen else [venv_lib()] + [Path(d) / LIB for d in SYSTEM_DIRS]
    return next((str(p) for p in candidates if p.is_file()), None)


@contextlib.contextmanager
def preloaded(lib: str | None):
    """Processes started inside this block (spawned) run with `lib` preloaded; this one is unchanged."""
    before = os.environ.get("LD_PRELOAD")
    if lib:
        os.environ["LD_PRELOAD"] = lib if not before else f"{lib}:{before}"
    try:
        yield
    finally:
        if lib:
            if before is None:
                os.environ.pop("LD_PRELOAD", None)
            else:
                os.environ["LD_PRELOAD"] = before


def fetch(dest: Path | None = None) -> str:
    """Best effort: put Debian's tcmalloc at `dest` (the venv's lib/) unless one is found already. One line back."""
    found = find()
    if found:
        return f"tcmalloc: {found}"
    dest = Path(dest) if dest else venv_lib()
    if sys.platform != "linux" or not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        return "tcmalloc: no apt-get here; training uses glibc malloc (about 1.2x slower; same bytes)"
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(["apt-get", "download", DEBIAN_PACKAGE], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob("*.deb"))
        if got.returncode != 0 or not debs:
            return (f"tcmalloc: `apt-get download {DEBIAN_PACKAGE}` failed ({got.stderr.strip().splitlines()[-1:]}); "
                    "training uses glibc malloc (about 1.2x slower; same bytes)")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(Path(tmp) / "x")], check=True)
        lib = next(p for p in sorted((Path(tmp) / "x").rglob("libtcmalloc_minimal.so.4*")) if not p.is_symlink())
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        shutil.copyfile(lib, part)
        os.replace(part, dest)
    return f"tcmalloc: fetched {debs[0].name} into {dest}"


if __name__ == "__main__":
    print(fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
