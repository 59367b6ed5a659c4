"""The typed configuration: defaults, overrides, one-line errors, run folders, members and the command line."""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from universal_neurons import UserError, load_profile
from universal_neurons.__main__ import main, parser
from universal_neurons.config.profile import (DEFAULTS,
                                              TRAIN_DEFAULTS,
                                              available_profiles,
                                              parse_value,
                                              run_name,
                                              split_overrides)
from universal_neurons.config.schema import SECTIONS, Config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """A working directory of its own, without $UN_ARTIFACTS: artifacts go to ./artifacts."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("UN_ARTIFACTS", raising=False)
    return tmp_path


def test_defaults_are_present_with_their_values():
    cfg = load_profile("smoke").cfg
    expected = {("analysis", "chunk_tokens"): 16384, ("analysis", "max_accumulator_gb"): 4.0,
                ("analysis", "partners"): None, ("analysis", "baseline"): "gaussian", ("analysis", "control"): True,
                ("train", "eval_tokens"): 262144, ("train", "threads"): 1, ("train", "schedule"): "cosine",
                ("model", "activation"): "gelu_pytorch_tanh", ("book", "threshold"): 0.5, ("book", "bins"): 50,
                ("corpus", "hf_split"): "train", ("tokenizer", "vocab_size"): 2048}  # smoke.yaml sets 2048
    for (section, key), value in expected.items():
        assert cfg[section][key] == value and type(cfg[section][key]) is type(value), (section, key)
    for section, keys in DEFAULTS.items():
        assert set(keys) <= set(cfg[section]), section
    assert set(TRAIN_DEFAULTS) <= set(cfg["train"])
    real = load_profile("gpt2-small").cfg  # no zoo: no train section, no zoo architecture keys
    assert "train" not in real and set(real["model"]) == {"n_ctx"} and "grid" not in real


def test_every_field_has_a_reason():
    for name, section in {**SECTIONS, "config": Config}.items():
        for key, field in section.model_fields.items():
            assert field.description and "\n" not in field.description, f"{name}.{key}"


@pytest.mark.parametrize("name", available_profiles())
def test_every_shipped_profile_loads(name):
    prof = load_profile(name)
    assert prof.members() and prof.cfg["description"]
    assert Config.model_validate(prof.cfg).model_dump(exclude_unset=True) == prof.cfg  # cfg is the typed config
    assert prof.config.analysis.n_tokens == prof.cfg["analysis"]["n_tokens"]


def test_keys_the_code_reads_can_be_set():
    p = load_profile("smoke", ["train.eval_tokens=4096", "analysis.chunk_tokens=1024",
                               "analysis.max_accumulator_gb=0.5", "book.threshold=control"])
    assert (p.cfg["train"]["eval_tokens"], p.cfg["analysis"]["chunk_tokens"]) == (4096, 1024)
    assert p.cfg["analysis"]["max_accumulator_gb"] == 0.5 and p.cfg["book"]["threshold"] == "control"


def test_numbers_yaml_reads_as_strings_become_numbers():
    assert parse_value("5e-3") == 0.005 and isinstance(parse_value("5e-3"), float)
    assert parse_value("1e6") == 1000000 and isinstance(parse_value("1e6"), int)
    assert parse_value("[1, 2]") == [1, 2] and parse_value("abc") == "abc" and parse_value("null") is None
    assert load_profile("smoke", ["train.tokens=2.4e6"]).cfg["train"]["tokens"] == 2400000


def test_overrides_with_spaces():
    assert split_overrides("train.seeds=[5, 6, 7] book.threshold=0.4") == ["train.seeds=[5, 6, 7]", "book.threshold=0.4"]
    assert split_overrides("  grid.variants=[{id: a, schedule: wsd}]\tmodels.reference='/a b' ") == [
        "grid.variants=[{id: a, schedule: wsd}]", "models.reference='/a b'"]
    assert split_overrides("") == []
    one = load_profile("smoke", "train.seeds=[5, 6, 7] analysis.reference_seed=5  book.threshold=0.4")
    many = load_profile("smoke", ["train.seeds=[5, 6, 7] analysis.reference_seed=5", "book.threshold=0.4"])
    assert one.cfg == many.cfg and one.run_name == many.run_name
    assert one.cfg["train"]["seeds"] == [5, 6, 7] and one.cfg["book"]["threshold"] == 0.4
    assert load_profile("gpt2-small", ["models.reference='/data/my model'"]).members()[0] == "/data/my model"


@pytest.mark.parametrize("name, overrides, words", [
    ("smoke", ["train.tokens=abc"], "train.tokens='abc'"),
    ("smoke", ["train.batch_size=0"], "train.batch_size=0"),
    ("smoke", ["train.batch_size=true"], "train.batch_size=True"),
    ("smoke", ["train.seeds=abc"], "train.seeds='abc'"),
    ("smoke", ["train.seeds=[0, 0]"], "distinct"),
    ("smoke", ["train=5"], "train is a section"),
    ("smoke", ["train.nokey=1"], "unknown key 'nokey' in train; known: seeds"),
    ("smoke", ["nosection.x=1"], "unknown section 'nosection'"),
    ("smoke", ["nonsense"], "section.key=value"),
    ("smoke", ["train.seeds=[0, 1"], "unclosed"),
    ("smoke", ["analysis.reference_seed=7"], "analysis.reference_seed=7 is not among train.seeds [0, 1, 2]"),
    ("smoke", ["train.seeds=[5, 6]"], "set analysis.reference_seed=5"),
    ("smoke", ["analysis.partners=[9]"], "seed(s) [9] not among train.seeds"),
    ("smoke", ["analysis.baseline=uniform"], "analysis.baseline='uniform'"),
    ("smoke", ["corpus.source=web"], "corpus.source='web'"),
    ("smoke", ["book.threshold=1.5"], "book.threshold=1.5 (override) must be a number in (0, 1] or control"),
    ("smoke", ["book.threshold=0"], "book.threshold=0"),
    ("smoke", ["book.threshold=abc"], "book.threshold='abc'"),
    ("smoke", ["model.n_head=3"], "not divisible"),
    ("gpt2-small", ["train.tokens=1000"], "has no train: section"),
    ("gpt5", [], "unknown profile 'gpt5'"),
])
def test_bad_input_is_one_line_naming_the_key(name, overrides, words):
    with pytest.raises(UserError) as e:
        load_profile(name, overrides)
    assert "\n" not in str(e.value) and words in str(e.value), str(e.value)


@pytest.mark.parametrize("text, words", [
    ("", "is empty"),
    ("train: [0, 1\n", "not valid YAML"),
    ("- a\n- b\n", "not a mapping"),
    ("models: {reference: a, partners: [b]}\ntrain: 5\n", "train=5 must be a section"),
    ("models: {reference: a, partners: [b]}\nextras: {x: 1}\n", "extras is not a known key; known: description"),
    ("models: {reference: a, partners: [b]}\nanalysis: {n_tokens: lots}\n", "analysis.n_tokens='lots'"),
    ("models: {reference: a}\n", "models.partners is missing"),
    ("description: nothing to analyse\n", "either a train: section"),
    ("train: {seeds: [0], tokens: 1}\nmodel: {n_layer: 1, d_model: 8, d_mlp: 8, n_head: 2}\n", "train.batch_size is missing"),
])
def test_bad_profile_files_are_one_line(tmp_path, text, words):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as e:
        load_profile(str(path))
    assert "\n" not in str(e.value) and words in str(e.value), str(e.value)


def test_a_profile_file_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("description: two real models\nmodels: {reference: /m/a, partners: [/m/b]}\n")
    prof = load_profile(str(path))
    assert prof.name == "mine" and prof.members() == ["/m/a", "/m/b"] and prof.cfg["analysis"]["n_tokens"] == 300000


def test_run_name_and_folders(in_tmp, monkeypatch):
    plain, over = load_profile("smoke"), load_profile("smoke", "book.threshold=0.4")
    digest = hashlib.sha1(b"book.threshold=0.4").hexdigest()[:10]
    assert plain.run_name == "smoke" and over.run_name == f"smoke+{digest}"
    art = in_tmp / "artifacts"
    assert plain.root == art / "smoke" and over.root == art / f"smoke+{digest}"
    assert over.tables_dir == over.root / "tables" and over.figures_dir == over.root / "figures"
    assert over.notebooks_dir == over.root / "notebooks"
    assert over.data_dir == plain.data_dir == art / "smoke" / "data"  # a book key: the data and the zoo are shared
    assert over.trained_dir == plain.trained_dir == art / "smoke" / "zoo"
    ctx = load_profile("smoke", "model.n_ctx=32")
    assert ctx.data_dir == ctx.root / "data" != plain.data_dir and ctx.trained_dir == ctx.root / "zoo"
    lr = load_profile("smoke", "train.lr=1e-3")
    assert lr.data_dir == plain.data_dir and lr.trained_dir == lr.root / "zoo"
    assert load_profile("default").shipped_dir == in_tmp / "zoo" / "release"  # resolved against the working dir
    monkeypatch.setenv("UN_ARTIFACTS", str(in_tmp / "elsewhere"))
    assert load_profile("smoke").root == in_tmp / "elsewhere" / "smoke"


def test_the_makefile_names_the_same_run_folder():
    settings = "train.seeds=[5, 6,   7] analysis.reference_seed=5 models.x='it''s'  book.threshold=0.4"
    make = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT), "where", "PROFILE=smoke",
                           f"SET={settings}"], capture_output=True, text=True, check=True).stdout.strip()
    shell = subprocess.run("printf '%s' \"$SET\" | tr -s ' ' | sha1sum", shell=True, capture_output=True, text=True,
                           env={**os.environ, "SET": settings}, check=True).stdout[:10]  # runs of spaces collapsed
    assert make == f"artifacts/smoke+{shell}" == f"artifacts/{run_name('smoke', settings)}"
    assert subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT), "where", "PROFILE=smoke"],
                          capture_output=True, text=True, check=True).stdout.strip() == "artifacts/smoke"


def test_members(in_tmp):
    zoo = in_tmp / "artifacts" / "smoke" / "zoo"
    seed = [str(zoo / f"seed-{k}") for k in range(3)]
    prof = load_profile("smoke")
    assert prof.members() == seed
    assert prof.members(reference=1) == [seed[1], seed[0], seed[2]]
    assert prof.members(partners=[2]) == [seed[0], seed[2]]
    assert prof.members(reference=2, partners=["/x/untrained"]) == [seed[2], "/x/untrained"]
    assert load_profile("smoke", "analysis.reference_seed=1 analysis.partners=[2]").members() == [seed[1], seed[2]]
    real = load_profile("pythia-160m")
    assert real.members() == ["EleutherAI/pythia-160m", *[f"EleutherAI/pythia-160m-seed{k}" for k in (1, 2, 3)]]
    assert real.members(partners=["EleutherAI/pythia-160m-seed2"]) == ["EleutherAI/pythia-160m",
                                                                       "EleutherAI/pythia-160m-seed2"]


def test_config_and_where_commands(in_tmp, capsys):
    out = in_tmp / "run" / "config.yaml"
    assert main(["config", "--profile", "smoke", "--set", "book.threshold=0.4", "--write", str(out)]) == 0
    written = yaml.safe_load(out.read_text())
    assert written == json.loads(json.dumps(load_profile("smoke", "book.threshold=0.4").cfg))
    os.utime(out, ns=(10**9, 10**9))
    assert main(["config", "--profile", "smoke", "--set", "book.threshold=0.4", "--write", str(out)]) == 0
    assert out.stat().st_mtime_ns == 10**9  # unchanged: not rewritten (make keeps what depends on it)
    assert main(["config", "--profile", "smoke", "--set", "book.threshold=0.3", "--write", str(out)]) == 0
    assert out.stat().st_mtime_ns != 10**9 and yaml.safe_load(out.read_text())["book"]["threshold"] == 0.3
    assert load_profile(str(out)).cfg["book"] == written["book"] | {"threshold": 0.3}  # the file is a profile
    capsys.readouterr()
    assert main(["where", "--profile", "smoke", "--set", "book.threshold=0.4"]) == 0
    assert capsys.readouterr().out.strip() == f"artifacts/{run_name('smoke', 'book.threshold=0.4')}"
    assert main(["info", "--profile", "smoke", "--set", "train.batch_size=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "train.batch_size" in err


def test_every_option_of_every_command_has_help():
    sub = next(a for a in parser()._actions if a.dest == "command")
    assert set(sub.choices) == {"data", "zoo", "release", "info", "universality", "properties", "sweep", "explorer",
                                "emergence", "config", "where"}
    for name, cmd in sub.choices.items():
        assert cmd.description, name
        for action in cmd._actions:
            assert action.help, f"{name} {action.option_strings}"


def test_markers_are_registered():
    import tomllib

    opts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert {m.split(":")[0] for m in opts["markers"]} >= {"slow", "gpu", "book"}
    assert "--strict-markers" in opts["addopts"]


def test_compute_commands_call_the_package_with_the_configuration(monkeypatch, capsys, tmp_path):
    from universal_neurons.runs import properties, universality

    seen = {}

    class Result:
        info = {"summary": {"n_universal": 3, "n_neurons": 512, "share_universal": 3 / 512, "excess_q50": 0.1,
                            "excess_q99": 0.4, "excess_max": 0.7}, "n_tokens": 1000, "names": ["a", "b"], "seconds": 1}

    def fake(name):
        def run(profile, device="cpu", progress=True, **kw):
            seen[name] = (profile.run_name, profile.cfg["analysis"]["n_tokens"], device, progress, kw)
            return Result()
        return run

    monkeypatch.setattr(universality, "run_universality", fake("universality"))
    monkeypatch.setattr(properties, "compute_properties", fake("properties"))
    assert main(["universality", "--profile", "smoke", "--set", "analysis.n_tokens=1000", "--quiet"]) == 0
    assert seen["universality"] == (run_name("smoke", "analysis.n_tokens=1000"), 1000, "cpu", False, {})
    assert "3 / 512 universal" in capsys.readouterr().out
    assert main(["properties", "--profile", "smoke", "--reference-only"]) == 0
    assert seen["properties"] == ("smoke", 30000, "cpu", True, {"all_members": False})
    assert main(["zoo", "--profile", "gpt2-small"]) == 0 and "nothing to train" in capsys.readouterr().out
    assert main(["sweep", "--list", "--out", str(tmp_path), "--set", "grid.layers=[2] snapshots.fractions=[]"]) == 0
    listing = capsys.readouterr().out
    assert "w32-l2-t600000" in listing and "-l4-" not in listing
