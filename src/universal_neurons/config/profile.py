"""Profiles: named configurations shipped with the package (`profiles/<name>.yaml`), overridable one key at a
time (`section.key=value`), checked against `config.schema` on load, and where a run's outputs live.

A profile either trains its own zoo (`train:` section; members are `<zoo>/seed-<k>`) or names real checkpoints
(`models:` section; members are hub ids or local folders). Outputs go under `$UN_ARTIFACTS`, else `./artifacts`
of the working directory: `artifacts/<run name>`, where a run with overrides has its own name (`<profile>+<hash>`),
so it never overwrites the profile's own outputs; what its overrides leave unchanged (the data, a zoo) is shared.
A profile file given by its path runs in a folder of its own, `<stem>@<hash of its path>`, never in a shipped
profile's (a user's `smoke.yaml` cannot touch `artifacts/smoke`); a run name is always one plain folder name, so
no profile name reaches outside the artifacts folder.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from ..core.cli import checked_device
from ..core.errors import UserError
from ..core.paths import artifacts_root, project_dir
from .recipe import describes_shipped
from .schema import DEFAULTS, MODEL_DEFAULTS, SECTIONS, TOP_LEVEL, TRAIN_DEFAULTS, Config, Section, as_number

# a shipped profile's name, and every run folder's: one plain folder name (no separator, no "..", no leading dot)
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]*$")
DATA_KEYS = ("corpus.", "tokenizer.", "model.n_ctx")  # overrides of these make a run build its own data
RECIPE_KEYS = ("corpus.", "tokenizer.", "model.", "train.")  # ... and of these, train its own zoo


def _profile_files():
    return resources.files("universal_neurons") / "profiles"


def available_profiles() -> list[str]:
    """The names of the profiles shipped with the package."""
    return sorted(f.name[:-5] for f in _profile_files().iterdir() if f.name.endswith(".yaml"))


# ---- overrides ---------------------------------------------------------------------------------------------
def split_overrides(text: str) -> list[str]:
    """`section.key=value` items of one string, split on whitespace outside brackets, braces and quotes:
    `"train.seeds=[5, 6, 7] book.threshold=0.4"` -> 2 items."""
    items, current, depth, quote = [], "", 0, None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch.isspace() and depth <= 0:
            if current:
                items.append(current)
            current, depth = "", 0
            continue
        current += ch
    if quote or depth > 0:
        raise UserError(f"override {current!r} has an unclosed {quote or 'bracket'}; close it (e.g. train.seeds=[0, 1])")
    return items + ([current] if current else [])


def normalised_overrides(overrides) -> list[str]:
    """A string or a list of strings (each may hold several items) as a list of single `section.key=value` items."""
    if overrides is not None and not isinstance(overrides, (str, list, tuple)):
        raise UserError(f"overrides={overrides!r} must be text of section.key=value items (or a list of them), "
                        "e.g. overrides=\"book.threshold=0.4 analysis.n_tokens=30000\"")
    texts = [overrides] if isinstance(overrides, str) else list(overrides or ())
    return [item for text in texts for item in split_overrides(str(text))]


def run_name(name: str, overrides=()) -> str:
    """`name`, or `<name>+<10 hex of sha1>` of the overrides with whitespace collapsed (the Makefile's ART).
    `name` must be one plain folder name (a shipped profile's, or `<stem>@<hash>` of a profile file)."""
    if not isinstance(name, str) or not RUN_NAME.match(name) or ".." in name:
        raise UserError(f"{name!r} cannot name a run folder (one plain folder name: letters, digits, '.', '_', "
                        "'-', no path separator or '..'); give a shipped profile's name or the path of a .yaml file")
    text = " ".join(" ".join(normalised_overrides(overrides)).split())
    return f"{name}+{hashlib.sha1(text.encode()).hexdigest()[:10]}" if text else name


def name_of(source: str) -> str:
    """A member's short name: its folder name (seed-0) or the source as given."""
    return Path(source).name


def parse_value(raw: str):
    """A value as YAML, except that numbers YAML 1.1 reads as strings (`5e-3`, `1e6`) become numbers."""
    try:
        return as_number(yaml.load(raw, Loader=_UniqueKeyLoader))  # noqa: S506 (a SafeLoader)
    except _DuplicateKey as e:
        raise UserError(f"{raw!r}: key {e.key!r} is given twice; keep one") from None
    except yaml.YAMLError as e:
        raise UserError(f"{raw!r} is not a valid value ({_yaml_problem(e)}); quote text with spaces, e.g. "
                        "models.reference=\"/data/my model\"") from None


def _override_key(item: str) -> str:
    return item.split("=", 1)[0].strip()


def _apply_override(cfg: dict, item: str, name: str) -> None:
    """Apply one `section.key=value` (or `description=...`, `shipped=...`, `data_from=...`) to `cfg`."""
    if "=" not in item:
        raise UserError(f"override {item!r} is not of the form section.key=value (e.g. train.tokens=300000)")
    key, raw = _override_key(item), item.split("=", 1)[1]
    parts = key.split(".")
    known = f"{', '.join(SECTIONS)}, {', '.join(TOP_LEVEL)}"
    if parts[0] in TOP_LEVEL and len(parts) == 1:
        cfg[key] = parse_value(raw)
        return
    if parts[0] not in SECTIONS:
        raise UserError(f"override {item!r}: unknown section {parts[0]!r}; known: {known}")
    section = SECTIONS[parts[0]]
    if len(parts) != 2:
        example = next(iter(section.model_fields))
        raise UserError(f"override {item!r}: {parts[0]} is a section; set one key at a time, "
                        f"e.g. {parts[0]}.{example}=...")
    if parts[1] not in section.model_fields:
        raise UserError(f"override {item!r}: unknown key {parts[1]!r} in {parts[0]}; known: "
                        f"{', '.join(section.model_fields)}")
    if not isinstance(cfg.get(parts[0]), dict):
        present = [s for s in SECTIONS if isinstance(cfg.get(s), dict)]
        raise UserError(f"override {item!r}: profile {name!r} has no {parts[0]}: section "
                        f"(its sections: {', '.join(present)})")
    cfg[parts[0]][parts[1]] = parse_value(raw)


# ---- loading and checking ------------------------------------------------------------------------------------
def _merged(defaults: dict, cfg: dict) -> dict:
    out = copy.deepcopy(defaults)
    for k, v in cfg.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def with_defaults(raw: dict) -> dict:
    """A profile file's sections with every default filled in (a zoo's train:/model: defaults only for a zoo)."""
    cfg = _merged(DEFAULTS, raw)
    if isinstance(cfg.get("train"), dict):
        cfg["train"] = _merged(TRAIN_DEFAULTS, cfg["train"])
        if isinstance(cfg.get("model"), dict):
            cfg["model"] = _merged(MODEL_DEFAULTS, cfg["model"])
    return cfg


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{getattr(e, 'problem', None) or type(e).__name__}{where}"


def file_folder(path) -> str:
    """The run folder name of a profile file: `<stem>@<10 hex of sha1 of its resolved path>` (relative to the
    project when it lies in it, so a moved checkout keeps its folders); the stem's odd characters become '-'."""
    resolved = Path(path).expanduser().resolve()
    try:
        ident = resolved.relative_to(project_dir().resolve()).as_posix()
    except ValueError:
        ident = resolved.as_posix()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", resolved.stem).strip("-.") or "profile"
    return f"{stem}@{hashlib.sha1(ident.encode()).hexdigest()[:10]}"


def _shipped_file(path: Path) -> str | None:
    """The shipped profile's name if `path` is the shipped profile file itself (given by its path), else None."""
    with resources.as_file(_profile_files()) as folder:
        try:
            rel = Path(path).resolve().relative_to(Path(folder).resolve())
        except ValueError:
            return None
    return rel.stem if len(rel.parts) == 1 and rel.stem in available_profiles() else None


def _read_profile(name: str) -> tuple[str, str, dict]:
    """(profile name, run folder name, raw sections) of a shipped profile, or of a YAML file named by its path."""
    if name.endswith((".yaml", ".yml")):
        path, label = Path(name).expanduser(), name
        if not path.is_file():
            raise UserError(f"no profile file {name} ({'a folder' if path.is_dir() else 'not found'}); give the path "
                            f"of a .yaml file, or a shipped profile's name ({', '.join(available_profiles())})")
        shipped = _shipped_file(path)
        name, folder = (shipped, shipped) if shipped else (path.stem, file_folder(path))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{label} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                            "give a readable UTF-8 YAML file") from None
    else:
        if not PROFILE_NAME.match(name) or ".." in name:
            raise UserError(f"profile {name!r} is neither a shipped profile's name (one of: "
                            f"{', '.join(available_profiles())}; no path separator or '..') nor a .yaml file; give a "
                            "profile file by its path ending in .yaml")
        path = _profile_files() / f"{name}.yaml"
        if not path.is_file():
            raise UserError(f"unknown profile {name!r}; choose one of: {', '.join(available_profiles())} "
                            "(or give the path of a .yaml file)")
        label, text, folder = f"profiles/{name}.yaml", path.read_text(), name
    raw = load_yaml(text, label)
    if raw is None:
        raise UserError(f"{label} is empty; a profile needs at least a train: or a models: section")
    if not isinstance(raw, dict):
        raise UserError(f"{label} is not a mapping of sections (got {type(raw).__name__}); write `section: {{key: value}}`")
    return name, folder, raw


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml's SafeLoader, except that a key given twice in one mapping is an error (YAML keeps the last)."""


def _unique_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        with contextlib.suppress(TypeError):
            if key in seen:
                raise _DuplicateKey(key, seen[key], key_node.start_mark)
            seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, first, second):
        super().__init__(f"key {key!r} given twice")
        self.key, self.first, self.second = key, first, second


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml(text: str, label: str):
    """`text` parsed as YAML (a key twice in one mapping refused), or a one-line UserError naming `label`."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except _DuplicateKey as e:
        raise UserError(f"{label}: key {e.key!r} is given twice (lines {e.first.line + 1} and {e.second.line + 1}); "
                        "keep one (YAML would silently keep the last)") from None
    except yaml.YAMLError as e:
        raise UserError(f"{label} is not valid YAML ({_yaml_problem(e)}); fix that line") from None


def _field_path(loc) -> list[str]:
    """The leading part of a pydantic error location that names fields: known ones, then at most one unknown."""
    out, model = [], Config
    for part in loc:
        if model is None or not isinstance(part, str):
            break
        out.append(part)
        if part not in model.model_fields:
            break
        model = SECTIONS.get(part) if model is Config else None
    return out


def _lookup(cfg: dict, path: list[str]):
    node = cfg
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def _problem(err: dict, path: list[str]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing":
        return "is missing"
    if kind == "extra_forbidden":
        parent = SECTIONS.get(path[0]) if len(path) > 1 else Config
        return f"is not a known key; known: {', '.join(parent.model_fields)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a section of key: value pairs"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}"
    if kind.startswith("bool"):
        return "must be true or false"
    if kind.startswith("string"):
        return "must be text"
    if kind.startswith("list"):
        return "must be a list"
    return str(err["msg"]).removeprefix("Value error, ")


def _fix(path: list[str]) -> str:
    """How to set the key right: an example value and the field's reason."""
    if len(path) != 2 or path[0] not in SECTIONS or path[1] not in SECTIONS[path[0]].model_fields:
        return ""
    field = SECTIONS[path[0]].model_fields[path[1]]
    if not field.examples and field.is_required():
        return f" ({field.description})"
    example = field.examples[0] if field.examples else field.get_default(call_default_factory=True)
    shown = "null" if example is None else str(example).lower() if isinstance(example, bool) else example
    return f"; e.g. {'.'.join(path)}={shown} ({field.description})"


def validated(cfg: dict, name: str, overridden=()) -> Config:
    """`cfg` as a typed Config, or a one-line UserError naming the key, what is wrong and how to fix it."""
    try:
        return Config.model_validate(cfg)
    except ValidationError as e:
        err = e.errors()[0]
        path = _field_path(err["loc"])
        key = ".".join(path)
        origin = " (override)" if key and any(o == key or key.startswith(o + ".") for o in overridden) else ""
        if not key:
            raise UserError(f"profile {name!r}: {_problem(err, path)}") from None
        value = _lookup(cfg, path)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
            value = float(value)  # 1e99 read as a whole number: shown as given
        shown = "" if err["type"] in ("missing", "extra_forbidden") else f"={value!r}"
        raise UserError(f"profile {name!r}: {key}{shown}{origin} {_problem(err, path)}{_fix(path)}") from None


def dump(config: Config) -> dict:
    """A Config as the plain dict `Profile.cfg` is: the keys the profile (with defaults) sets, nothing else."""
    return config.model_dump(exclude_unset=True)


def load_profile(name: str, overrides=(), device: str | None = None) -> Profile:
    """Load a shipped profile (or a .yaml file by path), apply `section.key=value` overrides (a list, or one
    string of several separated by whitespace) and check it; bad input is a one-line UserError. `device` (a
    chapter's parameter): checked too, like the CLI's --device (CUDA asked for and absent is a UserError)."""
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        raise UserError(f"profile={name!r} must be a profile name ({', '.join(available_profiles())}) or the path "
                        "of a .yaml file, e.g. profile=\"smoke\"")
    check_notebook_parameters()
    items = normalised_overrides(overrides)
    name, folder, raw = _read_profile(str(name))
    cfg = with_defaults(raw)
    for item in items:
        _apply_override(cfg, item, name)
    config = validated(cfg, name, [_override_key(i) for i in items])
    for line in plan_warnings(dump(config)):
        _warn_once(line)
    if device is not None:
        if not isinstance(device, str):
            raise UserError(f"device={device!r} must be text: cpu, cuda, cuda:<k> or mps")
        checked_device(device)
    return Profile(name, dump(config), tuple(items), folder)


# ---- plans far larger than the untiled one ---------------------------------------------------------------------
BYTES_PER_PAIR = 32  # maxima.BYTES_PER_PAIR (tests/faults/test_faults_edges.py checks they agree)
FAR = 16  # a plan with more passes than this over the held-out tokens (1 untiled) is worth a warning
_warned: set[str] = set()


def _warn_once(line: str) -> None:
    import sys

    if line not in _warned:
        _warned.add(line)
        print(f"warning: {line}", file=sys.stderr, flush=True)


def pass_tiles(n_a: int, partner_dims: list[int], budget_bytes: float, chunk_tokens: int) -> int:
    """How many passes over the held-out tokens the universality pass makes (`maxima._tiles`, counted):
    1 when every partner layer fits the accumulator budget side by side with every reference neuron."""
    max_d = max(partner_dims)
    width = int(budget_bytes // (BYTES_PER_PAIR * n_a + 8 * chunk_tokens))
    if width >= max_d:
        groups, used = 1, 0
        for d in partner_dims:
            if used and used + d > width:
                groups, used = groups + 1, 0
            used += d
        return groups
    rows = max(1, int((budget_bytes - 8 * chunk_tokens * max_d) // (BYTES_PER_PAIR * max_d + 8 * chunk_tokens)))
    return len(partner_dims) * -(-n_a // rows)


def plan_warnings(cfg: dict) -> list[str]:
    """One line per plan of a zoo profile that is far larger than the untiled one (known before any work from the
    profile alone): the universality pass split into many passes by `analysis.max_accumulator_gb`, or into many
    chunks by `analysis.chunk_tokens`."""
    a, m, out = cfg.get("analysis", {}), cfg.get("model", {}), []
    chunks = -(-int(a["n_tokens"]) // int(a["chunk_tokens"]))
    if chunks > 64 * FAR:
        out.append(f"analysis.chunk_tokens={a['chunk_tokens']} cuts the {int(a['n_tokens']):,} analysed tokens into "
                   f"{chunks:,} chunks, each with its own overhead; raise it (default 16384)")
    if "train" not in cfg or not m.get("n_layer") or not m.get("d_mlp"):
        return out  # real checkpoints: their sizes are known once loaded
    seeds, ref = cfg["train"]["seeds"], a.get("reference_seed", cfg["train"]["seeds"][0])
    n_partners = len(a.get("partners") or [s for s in seeds if s != ref])
    if n_partners < 1:
        return out
    n_a, dims = m["n_layer"] * m["d_mlp"], [m["d_mlp"]] * (m["n_layer"] * n_partners)
    gb = float(a["max_accumulator_gb"])
    tiles = pass_tiles(n_a, dims, gb * 1e9, int(a["chunk_tokens"]))
    if tiles > FAR:
        need = (BYTES_PER_PAIR * n_a + 8 * int(a["chunk_tokens"])) * max(dims) / 1e9
        out.append(f"analysis.max_accumulator_gb={gb:g} splits the universality pass into {tiles:,} passes over the "
                   f"held-out tokens (one per partner layer with {need:.2g} GB, all at once with "
                   f"{need * len(dims):.2g} GB); each pass rereads every activation, so raise it unless memory is "
                   "that short")
    return out


# ---- a chapter's papermill parameters ----------------------------------------------------------------------------
CHAPTER_PARAMETERS = ("profile", "device", "overrides")
INJECTED = "# Parameters"  # the first line of the cell papermill injects after a notebook's parameters cell


def _assigned(source: str) -> set[str]:
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}


def unknown_parameters(history: list[str]) -> list[str]:
    """The names papermill injected (`-p NAME VALUE`) that the notebook's parameters cell does not define, from the
    cells run so far (`history`, oldest first): papermill itself only warns, and the value would be ignored."""
    for i in range(len(history) - 1, -1, -1):
        if history[i].lstrip().startswith(INJECTED):
            known = set(CHAPTER_PARAMETERS) | (_assigned(history[i - 1]) if i else set())
            return sorted(_assigned(history[i]) - known)
    return []


def check_notebook_parameters() -> None:
    """In a notebook run by papermill: a one-line UserError for a parameter the chapter does not take (such as the
    old `-p partners 1`); every setting is a configuration key, passed in `overrides`."""
    import sys

    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython

    shell = get_ipython()
    history = list(getattr(shell, "user_ns", {}).get("In", []) or []) if shell is not None else []
    unknown = unknown_parameters([h for h in history if isinstance(h, str)])
    if unknown:
        example = f"analysis.{unknown[0]}=..." if unknown[0] in SECTIONS["analysis"].model_fields else "section.key=value"
        raise UserError(f"papermill parameter(s) {', '.join(unknown)} are not parameters of this chapter (it takes "
                        f"{', '.join(CHAPTER_PARAMETERS)}); set every other key through overrides, e.g. "
                        f"-p overrides \"{example}\"")


@dataclass
class Profile:
    """A loaded profile: `cfg` the plain dict every module reads, `config` the same checked and typed,
    `overrides` the `section.key=value` items it was loaded with (they name its run folder)."""

    name: str
    cfg: dict
    overrides: tuple[str, ...] = ()
    folder: str = ""  # the run folder's name without overrides: the shipped name, or `<stem>@<hash>` of a file

    @property
    def config(self) -> Config:
        return validated(self.cfg, self.name)

    @property
    def base_name(self) -> str:
        """The run folder of this profile without overrides (`artifacts/<base_name>`)."""
        return self.folder or self.name

    @property
    def run_name(self) -> str:
        return run_name(self.base_name, self.overrides)

    @property
    def root(self) -> Path:
        """This run's folder: `artifacts/<run name>`."""
        return artifacts_root() / self.run_name

    def _shared_root(self, keys) -> Path:
        """The profile's own folder when no override touches `keys`, else this run's folder."""
        touched = any(_override_key(o).startswith(keys) for o in self.overrides)
        return artifacts_root() / run_name(self.base_name) if self.overrides and not touched else self.root

    @property
    def data_dir(self) -> Path:
        """Token rows: the profile's own unless an override changes the corpus, tokenizer or model.n_ctx."""
        return self._shared_root(DATA_KEYS) / "data"

    @property
    def trained_tokenizer_dir(self) -> Path:
        """Where a tokenizer trained for this profile goes (shared like `data_dir`)."""
        return self._shared_root(DATA_KEYS) / "tokenizer"

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    @property
    def notebooks_dir(self) -> Path:
        return self.root / "notebooks"

    @property
    def corpus_root(self) -> Path:
        return artifacts_root() / "corpus"

    @property
    def shipped_dir(self) -> Path | None:
        """The folder of a shipped zoo (`shipped: zoo/release`, under the working directory), or None."""
        rel = self.cfg.get("shipped")
        return project_dir() / rel if rel else None

    @property
    def uses_shipped(self) -> bool:
        """True if the members are the shipped ones: a `shipped:` folder whose recipe the profile (with its
        overrides) still is; an override of the recipe means a zoo trained here instead."""
        return describes_shipped(self)  # False without a `shipped:` folder

    @property
    def zoo_dir(self) -> Path:
        """Where the members are: the shipped folder, or the zoo trained here."""
        return self.shipped_dir if self.uses_shipped else self.trained_dir

    @property
    def trained_dir(self) -> Path:
        """Where `make zoo` trains (a shipped profile: where RETRAIN=1 retrains it); shared with the profile's
        own run unless an override changes the recipe (corpus, tokenizer, model, train)."""
        return self._shared_root(RECIPE_KEYS) / "zoo"

    @property
    def is_zoo(self) -> bool:
        return "train" in self.cfg

    @property
    def seeds(self) -> list[int]:
        return list(self.cfg["train"]["seeds"]) if self.is_zoo else []

    def seed_dir(self, seed: int) -> Path:
        return self.zoo_dir / f"seed-{seed}"

    @property
    def revision(self) -> str | None:
        return None if self.is_zoo else self.cfg["models"].get("revision")

    def members(self, reference=None, partners=None, trained: bool = False) -> list[str]:
        """Model sources, reference first. `reference`, `partners`: zoo seeds (int) or sources `load_model` takes;
        None: analysis.reference_seed / analysis.partners, else the profile's order (every other member). With
        analysis.untrained, the untrained stand-ins of those members (`trained=True`: the members themselves)."""
        analysis = self.cfg.get("analysis", {})
        if self.is_zoo:
            ref = analysis.get("reference_seed", self.seeds[0])
            default = [ref] + [s for s in self.seeds if s != ref]
        else:
            default = [self.cfg["models"]["reference"], *self.cfg["models"]["partners"]]

        def source(member) -> str:
            is_seed = isinstance(member, int) and not isinstance(member, bool)
            return str(self.seed_dir(member)) if self.is_zoo and is_seed else str(member)

        first = source(default[0] if reference is None else reference)
        partners = analysis.get("partners") if partners is None else partners
        if partners is None:
            out = [first, *[m for m in map(source, default) if m != first]]
        else:
            out = [first, *map(source, partners)]
        if not self.untrained or trained:
            return out
        own = {source(m) for m in default}  # the profile's members get untrained stand-ins; other sources stay
        return [str(self.untrained_dir / name_of(s)) if s in own else s for s in out]

    @property
    def untrained(self) -> bool:
        """True for the negative control (analysis.untrained): the members are fresh, untrained models."""
        return bool(self.cfg.get("analysis", {}).get("untrained", False))

    @property
    def untrained_dir(self) -> Path:
        """Where the negative control's untrained members are saved (`<run folder>/untrained/<member name>`)."""
        return self.root / "untrained"


__all__ = ["Config", "Profile", "Section", "available_profiles", "load_profile",
           "run_name", "split_overrides", "DEFAULTS", "TRAIN_DEFAULTS", "MODEL_DEFAULTS"]
