"""The shipped zoo: trained once into the repository, checked by sha256 before any analysis, retrainable."""

import copy
import json
import shutil

import pytest

from universal_neurons import UserError, load_profile
from universal_neurons.config.profile import Profile
from universal_neurons.config.recipe import MANIFEST
from universal_neurons.models.release import check, retrain_and_compare, train_release
from universal_neurons.models.shipped import verify


@pytest.fixture(scope="module")
def released(tmp_path_factory, smoke, smoke_data):
    """A 2-seed smoke zoo trained as a shipped zoo into a temporary folder (the release path)."""
    root = tmp_path_factory.mktemp("release")
    cfg = copy.deepcopy(smoke.cfg)
    cfg["shipped"] = str(root / "zoo")
    cfg["train"].update(seeds=[0, 1], tokens=40960, checkpoint_every=20, eval_tokens=4096)
    prof = Profile("smoke", cfg)
    train_release(prof, progress=False)
    return prof


@pytest.fixture
def damaged(released, tmp_path):
    """A copy of the released zoo to damage, and its profile."""
    cfg = copy.deepcopy(released.cfg)
    cfg["shipped"] = str(tmp_path / "zoo")
    shutil.copytree(released.shipped_dir, tmp_path / "zoo")
    return Profile("smoke", cfg)


def test_release_records_every_seed_with_its_checksums(released):
    man = json.loads((released.shipped_dir / MANIFEST).read_text())
    assert man["final_seeds"] == [0, 1]
    for s in ("0", "1"):
        entry = man["seeds"][s]
        assert entry["threads"] == 1 and entry["cpu"] and entry["steps"] == 40
        assert set(entry["files"]) >= {"model.safetensors", "config.json", "training_log.json", "tokenizer.json"}
    assert man["recipe"]["train"]["threads"] == 1 and man["data"]["corpus_sha256"]
    assert man["packages"]["torch"]
    assert released.zoo_dir == released.shipped_dir
    assert "match their checksums" in check(released)


def _one_line(e):
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("damage", ["flip", "truncate", "lfs"])
def test_a_damaged_shipped_file_fails_with_one_line_naming_it_and_the_fixes(damaged, damage):
    f = damaged.shipped_dir / "seed-1" / "model.safetensors"
    data = bytearray(f.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray(b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    f.write_bytes(bytes(data))
    with pytest.raises(UserError) as e:
        verify(damaged.shipped_dir, damaged)
    msg = _one_line(e)
    assert "seed-1/model.safetensors" in msg and "git checkout --" in msg and "RETRAIN=1" in msg
    if damage == "lfs":
        assert "Git LFS pointer" in msg
    from universal_neurons import load_model  # loading the member checks it too: never a silent analysis

    with pytest.raises(UserError, match="model.safetensors"):
        load_model(damaged.shipped_dir / "seed-1")
    load_model(damaged.shipped_dir / "seed-0")  # the intact member still loads


def test_a_partial_shipped_zoo_names_the_missing_seeds(damaged):
    man = json.loads((damaged.shipped_dir / MANIFEST).read_text())
    man["final_seeds"] = [0]
    (damaged.shipped_dir / MANIFEST).write_text(json.dumps(man))
    with pytest.raises(UserError, match=r"partial: seed\(s\) 1 not final") as e:
        verify(damaged.shipped_dir, damaged)
    _one_line(e)
    (damaged.shipped_dir / MANIFEST).unlink()
    with pytest.raises(UserError, match="has no manifest.json"):
        verify(damaged.shipped_dir, damaged)


def test_an_overridden_recipe_is_not_the_shipped_zoo(released):
    other = Profile("smoke", {**copy.deepcopy(released.cfg)})
    other.cfg["train"]["tokens"] = 81920
    assert not other.uses_shipped and other.zoo_dir == other.trained_dir
    seeds_only = Profile("smoke", copy.deepcopy(released.cfg))
    seeds_only.cfg["train"]["seeds"] = [0]
    assert seeds_only.uses_shipped  # choosing fewer seeds is still the shipped zoo


def test_retraining_the_shipped_zoo_reproduces_its_bytes(released, tmp_path):
    lines = retrain_and_compare(released, out_root=tmp_path / "zoo", progress=False)
    assert lines == [f"seed {s}: identical bytes to the shipped member ({tmp_path / 'zoo' / f'seed-{s}'})" for s in (0, 1)]


def test_the_default_profile_is_the_shipped_release_zoo():
    prof = load_profile("default")
    assert prof.shipped_dir is not None and prof.shipped_dir.name == "release"
    man = json.loads((prof.shipped_dir / MANIFEST).read_text())
    assert len(prof.seeds) >= 4 and sorted(man["final_seeds"]) == sorted(prof.seeds)  # a reference and 3 partners
    verify(prof.shipped_dir, prof)
    total = sum(f.stat().st_size for f in prof.shipped_dir.rglob("*.safetensors"))
    assert total <= 60e6, f"shipped weights {total / 1e6:.1f} MB exceed 60 MB"


def test_a_finished_seed_is_committed_at_once(released, tmp_path, monkeypatch):
    import subprocess

    from universal_neurons.models.release import commit_seed

    repo = tmp_path / "repo"
    shutil.copytree(released.shipped_dir, repo / "zoo" / "release")
    git = ["git", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    monkeypatch.chdir(repo)  # commands run in the checkout: the commit message names the folder relative to it
    monkeypatch.setenv("GIT_AUTHOR_NAME", "t"), monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@t")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t"), monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@t")
    commit_seed(repo / "zoo" / "release", 1)
    log = subprocess.run(git + ["log", "--format=%s", "--name-only"], capture_output=True, text=True, check=True).stdout
    assert log.startswith("zoo/release: seed 1 (40,960 tokens") and "zoo/release/seed-1/model.safetensors" in log
