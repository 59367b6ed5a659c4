"""The families chapter's gallery (the paper's figure 1): one example neuron per family and the held-out text
window around its highest activation, its tokens drawn as boxes coloured by the activation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import plotting
from ...core.errors import UserError
from ...runs import families_pass

KIND = {"unigram": "unigram", "alphabet": "letter_token", "previous": "previous", "syntax": "syntax",
        "position": "position"}  # family -> the kind of feature that defines it
WIDTH = 30  # tokens in a window
GAP = 5  # points between two tokens' boxes (each box pads its text by 1.5 points)


def window(n: int, at: int, width: int = WIDTH) -> tuple[int, int]:
    """[start, stop) of `width` positions (all n when fewer) of a row of length n around position `at`."""
    if not 0 <= at < n:
        raise UserError(f"position {at} is outside a row of {n} tokens")
    width = min(int(width), n)
    start = min(max(at - width // 2, 0), n - width)
    return start, start + width


def peak(acts: np.ndarray, where: np.ndarray, n_ctx: int, width: int = WIDTH):
    """(row, start, stop, activations of the window, NaN at positions not kept) around the highest of `acts`
    [kept], whose (row, position) are the rows of `where` [kept, 2]."""
    k = int(np.nanargmax(acts))
    r, p = map(int, where[k])
    row = np.full(n_ctx, np.nan)
    on = where[:, 0] == r
    row[where[on, 1]] = acts[on]
    start, stop = window(n_ctx, p, width)
    return r, start, stop, row[start:stop]


def examples(picks: dict, vr: pd.DataFrame, kinds: dict, group) -> list[dict]:
    """Per family: its picked neuron (`picks[family]`, flat index), or when None the compared neuron (`group`)
    of highest VR by a feature of the family's kind not shown elsewhere (a stand-in); with its best feature of that kind
    and VR."""
    out, used = [], {int(n) for n in picks.values() if n is not None}
    for fam, n in picks.items():
        sub = vr.loc[[f for f in vr.index if kinds.get(f) == KIND[fam]], list(group)].astype(float)
        if sub.empty or sub.isna().all().all():
            continue
        stand_in = n is None
        if stand_in:
            best = sub.max()
            fresh = best.drop([u for u in used if u in best.index])
            n = int((fresh if fresh.notna().any() else best).idxmax())
        col = sub[n] if n in sub.columns else vr.loc[sub.index, n].astype(float)
        if col.isna().all():
            continue
        used.add(int(n))
        out.append({"family": fam, "neuron": int(n), "stand_in": stand_in, "feature": col.idxmax(),
                    "vr": float(col.max())})
    return out


def gallery(model, tokens: np.ndarray, mask: np.ndarray, ex: list[dict], decode, n_tokens: int,
            device="cpu") -> list[dict]:
    """The examples with their window of held-out text: token strings (`decode(id)`) and activations."""
    if not ex:
        return []
    acts, n_rows = families_pass.sample(model, tokens, mask, [e["neuron"] for e in ex], n_tokens=n_tokens, device=device)
    where = np.argwhere(mask[:n_rows])
    out = []
    for j, e in enumerate(ex):
        r, start, stop, a = peak(acts[:, j], where, tokens.shape[1])
        out.append(e | {"row": r, "start": start, "tokens": [decode(int(t)) for t in tokens[r, start:stop]],
                        "acts": a})
    return out


def label(e: dict, d_mlp: int) -> str:
    """"L<layer>.<neuron>: <family>, best feature <f> (VR <x>)"; a stand-in says its family is empty."""
    fam = f"{e['family']} (family empty: stand-in)" if e["stand_in"] else e["family"]
    where = f", on {e['text']} text" if e.get("text") else ""
    return (f"L{e['neuron'] // d_mlp}.{e['neuron'] % d_mlp}: {fam}, best feature {e['feature']} "
            f"(VR {e['vr']:.2f}){where}")


def _shown(s: str) -> str:
    return s.replace("\n", "\\n").replace("\t", "\\t")


def gallery_figure(ch):
    """One row per example: the window's tokens as boxes coloured by the post-activation, a colour bar each."""
    import matplotlib as mpl

    rows, d_mlp = ch.data["gallery"], ch.data["d_mlp"]
    fig, axes = plotting.subplots(max(len(rows), 1), 1, height=1.0, width=12, squeeze=False)
    cmap = mpl.colormaps["Reds"]
    for ax, e in zip(axes[:, 0], rows):
        a = np.asarray(e["acts"], dtype=float)
        norm = mpl.colors.Normalize(min(0.0, np.nanmin(a)), max(np.nanmax(a), 1e-9))
        strings = [_shown(t) for t in e["tokens"]]
        top, prev = int(np.nanargmax(a)), None
        for k, (s, v) in enumerate(zip(strings, a)):
            face = "0.9" if np.isnan(v) else cmap(norm(v))
            style = {"family": "monospace", "fontsize": 8, "va": "center", "ha": "left", "parse_math": False,
                     "color": "white" if not np.isnan(v) and norm(v) > 0.6 else "black",
                     "bbox": {"facecolor": face, "edgecolor": "black" if k == top else "none", "pad": 1.5}}
            # each token starts where the one before it ends (its drawn width, not a character count: no overlap)
            prev = (ax.text(0.005, 0.5, s, transform=ax.transAxes, **style) if prev is None else
                    ax.annotate(s, xy=(1, 0.5), xycoords=prev, xytext=(GAP, 0), textcoords="offset points", **style))
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.set_axis_off()
        ax.set_title(label(e, d_mlp), fontsize=9, loc="left")
        fig.colorbar(mpl.cm.ScalarMappable(norm, cmap), ax=ax, fraction=0.02, pad=0.01, label="post-act.")
    if not rows:
        axes[0, 0].set_axis_off()
        axes[0, 0].text(0, 0.5, "No family feature to draw an example of.", fontsize=11)
    fig.suptitle(f"{ch.data['reference']}: one neuron per family on held-out text (boxed: its highest activation)")
    return fig
