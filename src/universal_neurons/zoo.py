"""Train a zoo of GPT-2 models that differ only in their seed (initialisation and data order).

Each member is saved with `save_pretrained` (safetensors + config.json + tokenizer files +
training_log.json), the format of the Stanford CRFM checkpoints, so one loader serves both.
Training resumes from its last checkpoint; on CPU the same seed gives byte-identical weights.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_dir, atomic_path, write_json
from .errors import UserError
from .tokenizer import load_tokenizer
from .tokens import TokenRows


def gpt2_config(model_cfg: dict, vocab_size: int, bos_id: int):
    """A Hugging Face GPT2Config: gelu_new, LayerNorm, learned positions, no dropout, tied embeddings."""
    from transformers import GPT2Config

    m = model_cfg
    if m["d_model"] % m["n_head"]:
        raise UserError(f"model.d_model={m['d_model']} is not divisible by model.n_head={m['n_head']}")
    return GPT2Config(
        vocab_size=vocab_size, n_positions=m["n_ctx"], n_embd=m["d_model"], n_layer=m["n_layer"],
        n_head=m["n_head"], n_inner=m["d_mlp"], activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=bos_id, eos_token_id=bos_id,
        tie_word_embeddings=True,
    )


def lr_at(step: int, total: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return lr * (step + 1) / warmup
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
    """Mean next-token cross-entropy (nats) over `rows`."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        x = torch.as_tensor(rows[i:i + batch_size].astype(np.int64), device=device)
        with _autocast(device):
            logits = model(x).logits.float()
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten(), reduction="sum")
        total, count = total + loss.item(), count + x[:, 1:].numel()
    model.train()
    return total / count


def _autocast(device):
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _save_checkpoint(ckpt: Path, model, opt, step: int, log: list) -> None:
    from safetensors.torch import save_file

    ckpt.mkdir(parents=True, exist_ok=True)
    with atomic_path(ckpt / "model.safetensors") as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
                   if k != "lm_head.weight"}, str(tmp))
    with atomic_path(ckpt / "optimizer.pt") as tmp:
        torch.save(opt.state_dict(), tmp)
    write_json(ckpt / "state.json", {"step": step, "log": log})


def _load_checkpoint(ckpt: Path, model, opt, device):
    from safetensors.torch import load_file

    state = json.loads((ckpt / "state.json").read_text())
    model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(device)), strict=False)
    model.tie_weights()
    opt.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True))
    return state["step"], state["log"]


def is_current(out_dir: Path, model_cfg: dict, train_cfg: dict, provenance: dict) -> bool:
    """True if `out_dir` holds a member trained with these settings on this data (then training is skipped)."""
    log = Path(out_dir) / "training_log.json"
    if not log.is_file():
        return False
    info = json.loads(log.read_text())
    return info["model"] == model_cfg and _no_seeds(info["train"]) == _no_seeds(train_cfg) and info["data"] == provenance


def _no_seeds(train_cfg: dict) -> dict:
    return {k: v for k, v in train_cfg.items() if k != "seeds"}


def train_seed(seed: int, out_dir, train: TokenRows, heldout: TokenRows, model_cfg: dict, train_cfg: dict,
               tokenizer_dir, device: str = "cpu", progress: bool = True, stop_after: int | None = None) -> Path:
    """Train one member into `out_dir` (skipped if it exists). `stop_after` simulates an interruption (tests)."""
    from tqdm import tqdm
    from transformers import GPT2LMHeadModel

    out_dir = Path(out_dir)
    if is_current(out_dir, model_cfg, train_cfg, train.header["provenance"]):
        return out_dir
    n_ctx = model_cfg["n_ctx"]
    if train.n_ctx != n_ctx:
        raise UserError(f"token rows have n_ctx={train.n_ctx} but model.n_ctx={n_ctx}; rebuild the data")
    tok = load_tokenizer(tokenizer_dir)
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(gpt2_config(model_cfg, len(tok), tok.bos_token_id)).to(device)
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
                            lr=train_cfg["lr"], betas=(0.9, 0.95), eps=1e-8)
    ckpt = out_dir.parent / ".partial" / out_dir.name
    step, log = (_load_checkpoint(ckpt, model, opt, device) if (ckpt / "state.json").is_file() else (0, []))
    eval_tokens = train_cfg.get("eval_tokens", 2**18)  # held-out tokens for the final loss (a quarter meanwhile)
    eval_rows = heldout.tokens[: min(len(heldout), max(1, eval_tokens // 4 // n_ctx))]
    every = train_cfg["checkpoint_every"]
    t0, tokens_since, steps_since, loss_sum = time.time(), 0, 0, 0.0
    bar = tqdm(total=total, initial=step, desc=f"seed {seed}", unit="step", disable=not progress)
    model.train()
    while step < total:
        rows = batch_rows(seed, step, bs, len(train))
        x = torch.as_tensor(train.tokens[rows].astype(np.int64), device=device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, train_cfg["lr"], train_cfg["warmup_steps"])
        with _autocast(device):
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
        bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tps:,.0f}")
        if step % every == 0 or step == total:
            log.append({"step": step, "tokens": step * bs * n_ctx, "train_loss": loss_sum / steps_since,
                        "heldout_loss": heldout_loss(model, eval_rows, device), "tokens_per_s": tps})
            t0, tokens_since, steps_since, loss_sum = time.time(), 0, 0, 0.0
            _save_checkpoint(ckpt, model, opt, step, log)
        if stop_after is not None and step >= stop_after and step < total:
            bar.close()
            return ckpt
    bar.close()
    final_loss = heldout_loss(model, heldout.tokens[: min(len(heldout), max(1, eval_tokens // n_ctx))], device)
    info = {"seed": seed, "steps": total, "tokens": total * bs * n_ctx, "batch_size": bs, "n_ctx": n_ctx,
            "heldout_loss": final_loss, "unigram_entropy_nats": train.header["unigram_entropy_nats"],
            "log": log,
            "model": model_cfg, "train": train_cfg, "data": train.header["provenance"], "device": device.type,
            "n_params": sum(p.numel() for p in model.parameters())}
    info["train_seconds"] = sum(_interval_tokens(log, i) / log[i]["tokens_per_s"] for i in range(len(log)))
    with atomic_dir(out_dir) as tmp:
        model.cpu().save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_json(tmp / "training_log.json", info)
    shutil.rmtree(ckpt, ignore_errors=True)
    return out_dir


def _interval_tokens(log: list, i: int) -> int:
    return log[i]["tokens"] - (log[i - 1]["tokens"] if i else 0)


def train_zoo(profile, device: str = "cpu", progress: bool = True) -> list[Path]:
    """Train every seed of a zoo profile (cached: a trained seed is skipped)."""
    from .data import prepare, tokenizer_dir

    if not profile.is_zoo:
        raise UserError(f"profile {profile.name!r} names real checkpoints, it has no zoo to train")
    train, heldout = prepare(profile, progress)
    tdir = tokenizer_dir(profile, progress)
    return [train_seed(s, profile.seed_dir(s), train, heldout, profile.cfg["model"], profile.cfg["train"],
                       tdir, device=device, progress=progress) for s in profile.seeds]


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

    from .data import analysis_rows
    from .loading import load_model

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
