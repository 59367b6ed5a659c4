"""Profiles: named configurations shipped with the package (`profiles/<name>.yaml`), overridable one key at a
time (`section.key=value`), checked against `config_schema` on load, and where a run's outputs live.

A profile either trains its own zoo (`train:` section; members are `<zoo>/seed-<k>`) or names real checkpoints
(`models:` section; members are hub ids or local folders). Outputs go under `$UN_ARTIFACTS`, else `./artifacts`
of the working directory: `artifacts/<run name>`, where a run with overrides has its own name (`<profile>+<hash>`),
so it never overwrites the profile's own outputs; what its overrides leave unchanged (the data, a zoo) is shared.
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from .config_schema import (DEFAULTS, MODEL_DEFAULTS, SECTIONS, TOP_LEVEL, TRAIN_DEFAULTS, Config, Section,
                            as_number)
from .errors import UserError

DATA_KEYS = ("corpus.", "tokenizer.", "model.n_ctx")  # overrides of these make a run build its own data
RECIPE_KEYS = ("corpus.", "tokenizer.", "model.", "train.")  # ... and of these, train its own zoo


def project_dir() -> Path:
    """The folder commands run in (the checkout, for `make`): a `shipped:` zoo and results/ are found here."""
    return Path.cwd()


def artifacts_root() -> Path:
    """`$UN_ARTIFACTS` if set, else `./artifacts` of the working directory (absolute)."""
    return Path(os.environ.get("UN_ARTIFACTS") or project_dir() / "artifacts").absolute()


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
    """`name`, or `<name>+<10 hex of sha1>` of the overrides with whitespace collapsed (the Makefile's ART)."""
    text = " ".join(" ".join(normalised_overrides(overrides)).split())
    return f"{name}+{hashlib.sha1(text.encode()).hexdigest()[:10]}" if text else name


def name_of(source: str) -> str:
    """A member's short name: its folder name (seed-0) or the source as given."""
    return Path(source).name


def parse_value(raw: str):
    """A value as YAML, except that numbers YAML 1.1 reads as strings (`5e-3`, `1e6`) become numbers."""
    try:
        return as_number(yaml.safe_load(raw))
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


def _read_profile(name: str) -> tuple[str, dict]:
    """(profile name, raw sections) of a shipped profile, or of a YAML file named by its path."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        path, label, name = Path(name), name, Path(name).stem
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{label} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                            "give a readable UTF-8 YAML file") from None
    else:
        path = _profile_files() / f"{name}.yaml"
        if not path.is_file():
            raise UserError(f"unknown profile {name!r}; choose one of: {', '.join(available_profiles())} "
                            "(or give the path of a .yaml file)")
        label, text = f"profiles/{name}.yaml", path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{label} is not valid YAML ({_yaml_problem(e)}); fix that line") from None
    if raw is None:
        raise UserError(f"{label} is empty; a profile needs at least a train: or a models: section")
    if not isinstance(raw, dict):
        raise UserError(f"{label} is not a mapping of sections (got {type(raw).__name__}); write `section: {{key: value}}`")
    return name, raw


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
    items = normalised_overrides(overrides)
    name, raw = _read_profile(str(name))
    cfg = with_defaults(raw)
    for item in items:
        _apply_override(cfg, item, name)
    config = validated(cfg, name, [_override_key(i) for i in items])
    if device is not None:
        from .cli import checked_device

        if not isinstance(device, str):
            raise UserError(f"device={device!r} must be text: cpu, cuda, cuda:<k> or mps")
        checked_device(device)
    return Profile(name, dump(config), tuple(items))


@dataclass
class Profile:
    """A loaded profile: `cfg` the plain dict every module reads, `config` the same checked and typed,
    `overrides` the `section.key=value` items it was loaded with (they name its run folder)."""

    name: str
    cfg: dict
    overrides: tuple[str, ...] = ()

    @property
    def config(self) -> Config:
        return validated(self.cfg, self.name)

    @property
    def run_name(self) -> str:
        return run_name(self.name, self.overrides)

    @property
    def root(self) -> Path:
        """This run's folder: `artifacts/<run name>`."""
        return artifacts_root() / self.run_name

    def _shared_root(self, keys) -> Path:
        """The profile's own folder when no override touches `keys`, else this run's folder."""
        touched = any(_override_key(o).startswith(keys) for o in self.overrides)
        return artifacts_root() / self.name if self.overrides and not touched else self.root

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
        from .shipped import describes_shipped

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
        return [str(self.untrained_dir / name_of(s)) for s in out] if self.untrained and not trained else out

    @property
    def untrained(self) -> bool:
        """True for the negative control (analysis.untrained): the members are fresh, untrained models."""
        return bool(self.cfg.get("analysis", {}).get("untrained", False))

    @property
    def untrained_dir(self) -> Path:
        """Where the negative control's untrained members are saved (`<run folder>/untrained/<member name>`)."""
        return self.root / "untrained"


__all__ = ["Config", "Profile", "Section", "available_profiles", "artifacts_root", "load_profile", "project_dir",
           "run_name", "split_overrides", "DEFAULTS", "TRAIN_DEFAULTS", "MODEL_DEFAULTS"]
