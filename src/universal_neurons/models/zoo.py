"""Train a zoo of GPT-2 models that differ only in their seed (initialisation and data order).

Each member is saved with `save_pretrained` (safetensors + config.json + tokenizer files +
training_log.json), the format of the Stanford CRFM checkpoints, so one loader serves both.
Training resumes from its last checkpoint; on CPU the same seed gives byte-identical weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ..config.profile import MODEL_DEFAULTS, TRAIN_DEFAULTS
from ..core.atomic import atomic_dir, write_json
from ..core.checksum import file_sha256
from ..core.errors import UserError
from ..core.machine import cpu_model
from ..data.prepare import analysis_rows, prepare, tokenizer_dir
from ..data.tokenizer import load_tokenizer
from ..data.tokens import TokenRows
from . import malloc
from .checkpoints import (CHECKPOINT_FILES, _checkpoint_key, _load_checkpoint, _no_seeds, _save_checkpoint,
                          checkpoint_root, clean_partials, latest_checkpoint, recipe_key)
from .loading import load_model

ACTIVATIONS = ("gelu_pytorch_tanh", "gelu_new")  # GPT-2's tanh GELU: the same function, one kernel or several
ATTENTION = ("sdpa", "eager")
SCHEDULES = ("cosine", "wsd")


def gpt2_config(model_cfg: dict, vocab_size: int, bos_id: int, attention: str = "sdpa"):
    """A Hugging Face GPT2Config: tanh GELU, LayerNorm, learned positions, no dropout, tied embeddings."""
    from transformers import GPT2Config

    m = {**MODEL_DEFAULTS, **model_cfg}
    if m["d_model"] % m["n_head"]:
        raise UserError(f"model.d_model={m['d_model']} is not divisible by model.n_head={m['n_head']}")
    if m["activation"] not in ACTIVATIONS:
        raise UserError(f"model.activation={m['activation']!r} is not GPT-2's GELU; choose one of {', '.join(ACTIVATIONS)}")
    if attention not in ATTENTION:
        raise UserError(f"train.attention={attention!r} is unknown; choose one of {', '.join(ATTENTION)}")
    cfg = GPT2Config(
        vocab_size=vocab_size, n_positions=m["n_ctx"], n_embd=m["d_model"], n_layer=m["n_layer"],
        n_head=m["n_head"], n_inner=m["d_mlp"], activation_function=m["activation"],
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=bos_id, eos_token_id=bos_id,
        tie_word_embeddings=True,
    )
    cfg._attn_implementation = attention
    return cfg


def lr_at(step: int, total: int, lr: float, warmup: int, schedule: str = "cosine", decay_fraction: float = 0.2) -> float:
    """Linear warm-up, then either cosine decay to 10% of the peak (`cosine`) or the peak held constant
    until the last `decay_fraction` of the steps, which decay linearly to zero (`wsd`: warm-up, stable, decay)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "wsd":
        n_decay = max(1, round(decay_fraction * total))
        start = total - n_decay
        return lr if step < start else lr * (total - step) / n_decay
    frac = (step - warmup) / max(1, total - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def batch_rows(seed: int, step: int, batch_size: int, n_rows: int) -> np.ndarray:
    """Row indices of a training step: epoch-wise permutations seeded by (seed, epoch)."""
    per_epoch = n_rows // batch_size
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n_rows)
    return np.sort(perm[k * batch_size:(k + 1) * batch_size])


@torch.no_grad()
def heldout_loss(model, rows: np.ndarray, device, batch_size: int = 32) -> float:
    """Mean next-token cross-entropy (nats) over `rows`, of a Hugging Face model or a HookedTransformer; the
    model's training mode is left as it was."""
    training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        x = torch.as_tensor(rows[i:i + batch_size].astype(np.int64), device=device)
        out = model(x)
        logits = (out.logits if hasattr(out, "logits") else out).float()
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten(), reduction="sum")
        total, count = total + loss.item(), count + x[:, 1:].numel()
    model.train(training)
    return total / count


def _autocast(device, precision: str = "fp32"):
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def is_current(out_dir: Path, model_cfg: dict, train_cfg: dict, provenance: dict) -> bool:
    """True if `out_dir` holds a member trained with these settings on this data (then training is skipped)."""
    log = Path(out_dir) / "training_log.json"
    if not log.is_file():
        return False
    try:
        info = json.loads(log.read_text())
        return (_identity_ok(out_dir, info) and info["model"] == {**MODEL_DEFAULTS, **model_cfg}
                and _no_seeds(info["train"]) == _no_seeds({**TRAIN_DEFAULTS, **train_cfg}) and info["data"] == provenance)
    except (OSError, ValueError, KeyError, TypeError):
        return False  # a damaged log: the member is trained again


def _identity_ok(out_dir, info: dict) -> bool:
    """The member in `seed-<k>` is seed k (a folder copied over another is not current: it is trained again)."""
    import re

    m = re.fullmatch(r"seed-(\d+)", Path(out_dir).name)
    return m is None or info.get("seed") == int(m[1])


def snapshot_steps(total: int, n: int) -> list[int]:
    """Step 0 (the initialisation) and `n` steps log-spaced from total/256 to the last (duplicates dropped)."""
    if n <= 0:
        return []
    return sorted({0, *(int(round(x)) for x in np.geomspace(max(1.0, total / 256), total, n))})


def snapshot_dir(out_dir: Path) -> Path:
    """Where the snapshots of the member trained into `out_dir` go: <root>/snapshots/<member>/step-<n>."""
    return Path(out_dir).parent / "snapshots" / Path(out_dir).name


def train_seed(seed: int, out_dir, train: TokenRows, heldout: TokenRows, model_cfg: dict, train_cfg: dict,
               tokenizer_dir, device: str = "cpu", progress: bool = True, stop_after: int | None = None,
               position: int = 0, snapshots: int = 0) -> Path:
    """Train one member into `out_dir` (skipped if it exists). `stop_after` simulates an interruption (tests).
    `snapshots` > 0 also saves the weights at `snapshot_steps(total, snapshots)` into `snapshot_dir(out_dir)`
    (not part of the recipe: the training and its bytes are the same with or without them)."""
    model_cfg, train_cfg = {**MODEL_DEFAULTS, **model_cfg}, {**TRAIN_DEFAULTS, **train_cfg}
    out_dir = Path(out_dir)
    if is_current(out_dir, model_cfg, train_cfg, train.header["provenance"]):
        return out_dir
    threads = train_cfg["threads"]
    if not isinstance(threads, int) or threads < 1:
        raise UserError(f"train.threads={threads!r} must be a whole number of threads >= 1 (e.g. train.threads=1)")
    if train_cfg["schedule"] not in SCHEDULES:
        raise UserError(f"train.schedule={train_cfg['schedule']!r} is unknown; choose one of {', '.join(SCHEDULES)}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(seed, out_dir, train, heldout, model_cfg, train_cfg, tokenizer_dir, device, progress,
                      stop_after, position, snapshots)
    finally:
        torch.set_num_threads(before)


def _save_snapshot(folder: Path, model, tok, seed: int, step: int, tokens: int, key: dict) -> None:
    """The weights at one step as a loadable member folder (config, safetensors, tokenizer, checksums); one of
    the same recipe `key` is kept, one of another recipe replaced."""
    log = folder / "training_log.json"
    if log.is_file():
        with contextlib.suppress(OSError, ValueError):
            if json.loads(log.read_text()).get("key") == key:
                return
        shutil.rmtree(folder, ignore_errors=True)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_json(tmp / "training_log.json", {"seed": seed, "step": step, "tokens": tokens, "snapshot": True, "key": key,
                                               "files": {f.name: file_sha256(f) for f in sorted(tmp.glob("*.safetensors"))}})


def _train(seed, out_dir, train, heldout, model_cfg, train_cfg, tokenizer_dir, device, progress, stop_after,
           position, snapshots=0) -> Path:
    from tqdm import tqdm
    from transformers import GPT2LMHeadModel

    n_ctx = model_cfg["n_ctx"]
    if train.n_ctx != n_ctx:
        raise UserError(f"token rows have n_ctx={train.n_ctx} but model.n_ctx={n_ctx}; rebuild the data")
    tok = load_tokenizer(tokenizer_dir)
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(gpt2_config(model_cfg, len(tok), tok.bos_token_id, train_cfg["attention"])).to(device)
    model.loss_type = "ForCausalLM"  # the default it falls back to anyway, without the warning
    bs = train_cfg["batch_size"]
    if bs > len(train):
        raise UserError(f"train.batch_size={bs} exceeds the {len(train)} training rows; lower it or use a larger corpus")
    total = int(train_cfg["tokens"]) // (bs * n_ctx)
    if total < 1:
        raise UserError(f"train.tokens={train_cfg['tokens']} is less than one batch ({bs}x{n_ctx}); raise it")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": train_cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=train_cfg["lr"], betas=(0.9, 0.95), eps=1e-8, fused=bool(train_cfg["fused_adamw"]))
    root = checkpoint_root(out_dir)
    key = recipe_key(seed, model_cfg, train_cfg, train.header["provenance"])
    last = latest_checkpoint(root)
    if last and _checkpoint_key(last) != key:  # another recipe's run
        shutil.rmtree(root)
        last = None
    step, log = _load_checkpoint(last, model, opt, device) if last else (0, [])
    eval_tokens = train_cfg["eval_tokens"]  # held-out tokens for the final loss (a quarter meanwhile)
    eval_rows = heldout.tokens[: min(len(heldout), max(1, eval_tokens // 4 // n_ctx))]
    every, precision = train_cfg["checkpoint_every"], train_cfg.get("precision", "fp32")
    snap_at, snap_dir = set(snapshot_steps(total, snapshots)), snapshot_dir(out_dir)
    if step == 0 and 0 in snap_at:
        _save_snapshot(snap_dir / "step-000000", model, tok, seed, 0, 0, key)
    t0, tokens_since, steps_since, loss_sum = time.time(), 0, 0, 0.0
    bar = tqdm(total=total, initial=step, desc=f"seed {seed}", unit="step", disable=not progress, position=position)
    model.train()
    while step < total:
        rows = batch_rows(seed, step, bs, len(train))
        x = torch.as_tensor(train.tokens[rows].astype(np.int64), device=device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, train_cfg["lr"], train_cfg["warmup_steps"], train_cfg["schedule"],
                            train_cfg["decay_fraction"])
        with _autocast(device, precision):
            loss = model(x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_since += x.numel()
        steps_since += 1
        loss_sum += loss.item()
        tps = tokens_since / max(time.time() - t0, 1e-9)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tps:,.0f}", refresh=False)
        if step in snap_at:  # before the checkpoint: a resumed run never skips a snapshot
            _save_snapshot(snap_dir / f"step-{step:06d}", model, tok, seed, step, step * bs * n_ctx, key)
        if step % every == 0 or step == total:
            log.append({"step": step, "tokens": step * bs * n_ctx, "train_loss": loss_sum / steps_since,
                        "heldout_loss": heldout_loss(model, eval_rows, device), "tokens_per_s": tps})
            t0, tokens_since, steps_since, loss_sum = time.time(), 0, 0, 0.0
            _save_checkpoint(root, model, opt, step, log, key)
        if stop_after is not None and step >= stop_after and step < total:
            bar.close()
            return root
    bar.close()
    final_loss = heldout_loss(model, heldout.tokens[: min(len(heldout), max(1, eval_tokens // n_ctx))], device)
    info = {"seed": seed, "steps": total, "tokens": total * bs * n_ctx, "batch_size": bs, "n_ctx": n_ctx,
            "heldout_loss": final_loss, "unigram_entropy_nats": train.header["unigram_entropy_nats"],
            "log": log,
            "model": model_cfg, "train": train_cfg, "data": train.header["provenance"], "device": device.type,
            "cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "n_params": sum(p.numel() for p in model.parameters())}
    info["train_seconds"] = sum(_interval_tokens(log, i) / log[i]["tokens_per_s"] for i in range(len(log)))
    with atomic_dir(out_dir) as tmp:
        model.cpu().save_pretrained(tmp)
        tok.save_pretrained(tmp)
        # every load checks the weights against these (loading.verify_recorded): overwritten bytes never load
        info["files"] = {f.name: file_sha256(f) for f in sorted(tmp.glob("*.safetensors"))}
        write_json(tmp / "training_log.json", info)
    shutil.rmtree(root, ignore_errors=True)
    with contextlib.suppress(OSError):
        root.parent.rmdir()
    return out_dir


def _interval_tokens(log: list, i: int) -> int:
    return log[i]["tokens"] - (log[i - 1]["tokens"] if i else 0)


def _train_job(job: dict) -> str:
    return str(train_seed(**job))


def parallel_workers(train_cfg: dict, n_jobs: int, device: str = "cpu") -> int:
    """How many members to train side by side: one per `train.threads` cores on a CPU, one on a GPU."""
    if torch.device(device).type != "cpu" or n_jobs < 2:
        return 1
    return max(1, min(n_jobs, (os.cpu_count() or 1) // {**TRAIN_DEFAULTS, **train_cfg}["threads"]))


def train_members(jobs: list[dict], device: str = "cpu", progress: bool = True, on_done=None) -> list[Path]:
    """Train several members (each a dict of `train_seed` arguments), side by side in separate processes
    when the cores allow (a one-thread process per core beats one process using every core), on a CPU with
    tcmalloc preloaded where it is found (`malloc`). `on_done(path)` runs in this process as each member
    finishes (e.g. to record it in a manifest)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    clean_partials(jobs)  # checkpoints of another recipe, torn ones, an empty .partial/
    todo = [j for j in jobs if not is_current(j["out_dir"], j["model_cfg"], j["train_cfg"], j["train"].header["provenance"])]
    workers = parallel_workers(todo[0]["train_cfg"], len(todo), device) if todo else 1
    lib = malloc.find() if todo and torch.device(device).type == "cpu" else None
    if workers == 1 and not lib:
        for j in todo:
            path = train_seed(**j, device=device, progress=progress)
            if on_done:
                on_done(path)
        clean_partials(jobs)
        return [Path(j["out_dir"]) for j in jobs]
    import multiprocessing as mp

    from tqdm import tqdm

    with malloc.preloaded(lib), ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_train_job, {**j, "device": device, "progress": progress, "position": i % workers + 1}): j
                   for i, j in enumerate(todo)}
        bar = tqdm(total=len(todo), desc=f"members ({workers} side by side)" if workers > 1 else "members", unit="member", disable=not progress)
        for f in as_completed(futures):
            path = Path(f.result())
            bar.update(1)
            bar.write(f"trained {path}")
            if on_done:
                on_done(path)
        bar.close()
    clean_partials(jobs)
    return [Path(j["out_dir"]) for j in jobs]


def zoo_jobs(profile, out_root: Path | None = None, progress: bool = True, seeds=None) -> list[dict]:
    """One `train_seed` job per seed of a zoo profile (or per seed of `seeds`, each one of the profile's), into
    `out_root/seed-<k>` (default the profile's zoo)."""
    if not profile.is_zoo:
        raise UserError(f"profile {profile.name!r} names real checkpoints, it has no zoo to train")
    chosen = profile.seeds if seeds is None else list(seeds)
    bad = [s for s in chosen if s not in profile.seeds]
    if bad:
        raise UserError(f"seed(s) {bad} are not in the profile's train.seeds {profile.seeds}; pick among them")
    train, heldout = prepare(profile, progress)
    tdir = tokenizer_dir(profile, progress)
    root = Path(out_root) if out_root is not None else profile.zoo_dir
    return [{"seed": s, "out_dir": root / f"seed-{s}", "train": train, "heldout": heldout,
             "model_cfg": profile.cfg["model"], "train_cfg": profile.cfg["train"], "tokenizer_dir": tdir}
            for s in chosen]


def train_zoo(profile, device: str = "cpu", progress: bool = True) -> list[Path]:
    """Train every seed of a zoo profile (cached: a trained seed is skipped)."""
    return train_members(zoo_jobs(profile, progress=progress), device, progress)


def read_logs(profile):
    """(summary, curves) DataFrames from each trained seed's training_log.json."""
    import pandas as pd

    summary, curves = [], []
    for s in profile.seeds:
        path = profile.seed_dir(s) / "training_log.json"
        if not path.is_file():
            raise UserError(f"seed {s} of profile {profile.name!r} is not trained ({path} missing); run `make zoo PROFILE={profile.name}`")
        info = json.loads(path.read_text())
        summary.append({"seed": s, "parameters": info["n_params"], "tokens": info["tokens"],
                        "steps": info["steps"], "heldout_loss": info["heldout_loss"],
                        "unigram_entropy": info["unigram_entropy_nats"], "train_seconds": info["train_seconds"],
                        "tokens_per_s": info["tokens"] / info["train_seconds"], "device": info["device"]})
        curves += [{"seed": s, **e} for e in info["log"]]
    return pd.DataFrame(summary), pd.DataFrame(curves)


@torch.no_grad()
def evaluate_members(profile, device: str = "cpu", n_tokens: int = 65536):
    """For profiles of real checkpoints (trained elsewhere): parameters and held-out loss of each member,
    measured here on the first `n_tokens` tokens of the analysis rows, in the shape of `read_logs`' summary."""
    import pandas as pd

    rows = analysis_rows(profile, progress=False)
    tokens = rows.tokens[: max(1, n_tokens // rows.n_ctx)]
    out = []
    for source in profile.members():
        model = load_model(source, device=device, revision=profile.revision)
        losses = [model(torch.as_tensor(tokens[i:i + 8].astype(np.int64), device=device), return_type="loss").item()
                  for i in range(0, len(tokens), 8)]
        out.append({"seed": Path(str(source)).name, "parameters": sum(p.numel() for p in model.parameters()),
                    "tokens": None, "heldout_loss": float(np.mean(losses)),
                    "unigram_entropy": rows.header["unigram_entropy_nats"]})
    return pd.DataFrame(out)
