"""The static neuron explorer: one plain HTML page per selected neuron and an index page, written into the book.

Input is one record (a JSON-like dict, built by `universal_neurons.explorer.records.records`) per neuron; see `RECORD_KEYS` and
`WINDOW_KEYS` for its fields. Output is plain HTML and CSS, readable with JavaScript off, that loads nothing from
elsewhere: every link is relative (between the pages and to `_static/`, copied next to them). Only the index
page has a script (`_static/table.js`: sort by a column, filter the rows); without it the table is still there.

Colour scale (stated on every page with a legend): a token's background goes linearly from white (activation
<= 0) to red (#e63c3c, activation >= M), where M is the neuron's largest activation in its top windows (its
first window's value; 1 if that is not positive); grey marks a position without a value. A twin's windows use
the twin's own M. Hovering a token shows its activation with 3 decimals (its `title`); the example token of each
window (its `max_index`) is outlined; newlines show as ⏎, tabs as ⇥, other control characters as their Unicode
control pictures, an empty token as ∅, and spaces are kept.

The markup is in Jinja2 templates (`templates/`, autoescaped: every value from a record is escaped there); this
module checks the records and gives the templates what they show, numbers formatted.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import numbers
import posixpath
import re
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined

from ..core.atomic import atomic_path, write_text
from ..core.errors import UserError

ROLES = ("universal", "top", "twin", "contrast", "discussed")  # top: the top by excess correlation, standing in (too
# few universal); discussed: a neuron a chapter (entropy, attention) discusses that has no page otherwise
REFERENCE_ROLES = ("universal", "top", "contrast", "discussed")  # the reference's neurons listed in the index table
RECORD_KEYS = ("model", "layer", "neuron", "role", "load", "row", "labels", "n_tokens", "frequency", "histogram",
               "top", "quantiles", "vocab", "twins")
WINDOW_KEYS = ("tokens", "values", "max_value", "max_index", "doc_index", "source")
TWIN_KEYS = ("model", "layer", "neuron", "correlation")
STATIC_DIR = "_static"
STATIC_FILES = ("explorer.css", "table.js")  # shipped in universal_neurons/explorer_static/

WHITE, RED, GREY = (255, 255, 255), (230, 60, 60), "#c8c8c8"  # the colour scale; red keeps black text readable
# twin comparison: the first 3 windows of each, 12 tokens before the example token and 4 after
MINI_WINDOWS, MINI_BEFORE, MINI_AFTER = 3, 12, 4
_NAME = re.compile(r"[A-Za-z0-9_.+-]+")  # one path segment of a model name
_VISIBLE = {"\n": "⏎", "\t": "⇥", "\x7f": "␡"}
_FIX = "rebuild the records with universal_neurons.explorer.records.records"


# ---------------------------------------------------------------- names, paths, formatting

def page_path(model, layer, neuron) -> str:
    """A neuron page's path relative to the site root: `<model>/L<layer>N<neuron>.html`."""
    return f"{model}/L{int(layer)}N{int(neuron)}.html"


def neuron_label(model, layer, neuron) -> str:
    """The id shown for a neuron, e.g. `seed-0 L1.805`."""
    return f"{model} L{int(layer)}.{int(neuron)}"


def record_key(record) -> tuple[str, int, int]:
    """A record's key in `records_by_key`: (model, layer, neuron)."""
    return record["model"], int(record["layer"]), int(record["neuron"])


def _href(target: str, here: str) -> str:
    """The relative, URL-quoted link from the page at `here` to `target` (both relative to the site root)."""
    return quote(posixpath.relpath(target, posixpath.dirname(here) or "."))


def _val(v) -> str:
    """An activation as shown in a token's title and in window headers: 3 decimals."""
    return f"{float(v):.3f}"


def _corr(c) -> str:
    """A twin's correlation: 3 decimals."""
    return f"{float(c):.3f}"


def _fmt(x, digits: int = 4) -> str:
    """A table cell: floats to `digits` significant figures, lists joined, None empty."""
    if x is None:
        return ""
    if isinstance(x, bool) or isinstance(x, str):
        return str(x)
    if isinstance(x, numbers.Integral):
        return str(int(x))
    if isinstance(x, numbers.Real):
        return f"{float(x):.{digits}g}"
    if isinstance(x, (list, tuple)):
        return ", ".join(_fmt(i, digits) for i in x)
    return json.dumps(x, sort_keys=True, default=str)


def visible(token: str) -> str:
    """`token` with newlines, tabs and other control characters made visible (⏎, ⇥, ␀...), ∅ when empty."""
    out = "".join(_VISIBLE.get(c) or (chr(0x2400 + ord(c)) if ord(c) < 0x20 else c) for c in token)
    return out or "∅"


def colour(value, scale_max: float) -> str:
    """The background of a token: white at `value` <= 0 to red at `value` >= `scale_max`, as `#rrggbb`."""
    t = min(max(float(value) / scale_max, 0.0), 1.0) if math.isfinite(float(value)) else 1.0
    return "#" + "".join(f"{round(w + t * (r - w)):02x}" for w, r in zip(WHITE, RED))


def scale_max(record) -> float:
    """M, the top of a neuron's colour scale: the largest `max_value` of its top windows, 1 if not positive."""
    m = max((float(w["max_value"]) for w in record["top"]), default=0.0)
    return m if math.isfinite(m) and m > 0 else 1.0


def _profile_name(profile) -> str:
    return str(getattr(profile, "run_name", None) or getattr(profile, "name", None) or profile)


# ---------------------------------------------------------------- checking records

def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _fail(rid: str, problem: str, fix: str = _FIX):
    raise UserError(re.sub(r"\s+", " ", f"explorer record {rid}: {problem}; {fix}"))


def _check_window(w, rid: str, where: str) -> None:
    if not isinstance(w, dict):
        _fail(rid, f"{where} is a {type(w).__name__}, not a window dict", f"give it the keys {', '.join(WINDOW_KEYS)}")
    missing = [k for k in WINDOW_KEYS if k not in w]
    if missing:
        _fail(rid, f"{where} lacks {', '.join(missing)}", f"give every window the keys {', '.join(WINDOW_KEYS)}")
    toks, vals = w["tokens"], w["values"]
    if not isinstance(toks, (list, tuple)) or not isinstance(vals, (list, tuple)) or len(toks) != len(vals):
        _fail(rid, f"{where} has tokens and values of different lengths or types",
              "give one value (a number or None) per token")
    if not all(isinstance(t, str) for t in toks) or not all(v is None or _is_num(v) for v in vals):
        _fail(rid, f"{where} has a token that is not text or a value that is not a number or None",
              "decode tokens to strings and store activations as floats")
    if not _is_num(w["max_value"]) or not _is_int(w["doc_index"]) or not isinstance(w["source"], str):
        _fail(rid, f"{where} needs a numeric max_value, an integer doc_index and a text source", _FIX)
    if not _is_int(w["max_index"]) or not (0 <= w["max_index"] < max(len(toks), 1)):
        _fail(rid, f"{where} has max_index {w['max_index']!r} outside its {len(toks)} tokens",
              "point max_index at the example token")


def check_record(record) -> None:
    """Raise UserError (one line: the problem and the fix) unless `record` has every field the pages use."""
    if not isinstance(record, dict):
        raise UserError(f"explorer record is a {type(record).__name__}, not a dict; {_FIX}")
    rid = repr(neuron_label(record["model"], record["layer"], record["neuron"])) if all(
        _is_int(record.get(k)) for k in ("layer", "neuron")) and "model" in record else "(no id)"
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        _fail(rid, f"missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
              f"give every record the keys {', '.join(RECORD_KEYS)} (row and labels may be empty)")
    model = record["model"]
    if not isinstance(model, str) or not all(_NAME.fullmatch(s) and s not in (".", "..") for s in model.split("/")):
        _fail(rid, f"model {model!r} cannot name a folder", "use names of letters, digits and _ . + - such as 'seed-0'")
    if not _is_int(record["layer"]) or not _is_int(record["neuron"]) or record["layer"] < 0 or record["neuron"] < 0:
        _fail(rid, "layer and neuron must be non-negative integers", _FIX)
    if record["role"] not in ROLES:
        _fail(rid, f"role {record['role']!r} is unknown", f"use one of {', '.join(ROLES)}")
    if not isinstance(record["load"], str):
        _fail(rid, "load must be one line of Python (text)", _FIX)
    for k in ("row", "labels", "histogram", "vocab"):
        if not isinstance(record[k], dict):
            _fail(rid, f"{k} is a {type(record[k]).__name__}, not a dict", f"store {k} as a dict ({{}} when empty)")
    if not _is_int(record["n_tokens"]) or not _is_num(record["frequency"]):
        _fail(rid, "n_tokens must be an integer and frequency a number", _FIX)
    hist = record["histogram"]
    missing = [k for k in ("edges", "counts", "below", "above") if k not in hist]
    if missing:
        _fail(rid, f"histogram lacks {', '.join(missing)}", "give it edges, counts, below and above")
    edges, counts = hist["edges"], hist["counts"]
    if not isinstance(edges, (list, tuple)) or not isinstance(counts, (list, tuple)) or len(edges) != len(counts) + 1:
        _fail(rid, f"histogram has {len(edges) if isinstance(edges, (list, tuple)) else '?'} edges for "
                   f"{len(counts) if isinstance(counts, (list, tuple)) else '?'} counts",
              "give one more edge than counts (edges are the bins' bounds)")
    if not all(_is_num(e) and math.isfinite(e) for e in edges) or any(b < a for a, b in zip(edges, edges[1:])):
        _fail(rid, "histogram edges must be finite numbers in increasing order", _FIX)
    if not all(_is_int(c) and c >= 0 for c in [*counts, hist["below"], hist["above"]]):
        _fail(rid, "histogram counts, below and above must be non-negative integers", _FIX)
    if not isinstance(record["top"], (list, tuple)):
        _fail(rid, "top must be a list of windows", _FIX)
    for i, w in enumerate(record["top"]):
        _check_window(w, rid, f"top window {i}")
    if not isinstance(record["quantiles"], (list, tuple)):
        _fail(rid, "quantiles must be a list of {range, examples}", _FIX)
    for i, q in enumerate(record["quantiles"]):
        if (not isinstance(q, dict) or not isinstance(q.get("range"), (list, tuple)) or len(q["range"]) != 2
                or not all(_is_num(x) for x in q["range"]) or not isinstance(q.get("examples"), (list, tuple))):
            _fail(rid, f"quantile {i} needs a range [lo, hi] and a list of examples", _FIX)
        for j, w in enumerate(q["examples"]):
            _check_window(w, rid, f"quantile {i} example {j}")
    for side in ("top", "bottom"):
        pairs = record["vocab"].get(side, [])
        if not isinstance(pairs, (list, tuple)) or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str) and _is_num(p[1])
                for p in pairs):
            _fail(rid, f"vocab {side} must be a list of [token, value] pairs", _FIX)
    if not isinstance(record["twins"], (list, tuple)):
        _fail(rid, "twins must be a list", _FIX)
    for i, t in enumerate(record["twins"]):
        if not isinstance(t, dict) or any(k not in t for k in TWIN_KEYS):
            _fail(rid, f"twin {i} lacks one of {', '.join(TWIN_KEYS)}", f"give every twin {', '.join(TWIN_KEYS)}")
        if (not isinstance(t["model"], str) or not _is_int(t["layer"]) or not _is_int(t["neuron"])
                or not _is_num(t["correlation"])):
            _fail(rid, f"twin {i} needs a text model, integer layer and neuron and a numeric correlation", _FIX)


# ---------------------------------------------------------------- what the templates show

_TEMPLATES = Environment(loader=PackageLoader("universal_neurons.explorer", "templates"), autoescape=True,
                         keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined)


def _token_view(token: str, value, m: float, example: bool) -> dict:
    """A token as a window shows it: its text made visible, its background on the scale [0, m] (None: no value)."""
    return {"cls": "tok ex" if example else "tok", "text": visible(token),
            "background": None if value is None else colour(value, m),
            "title": "no value" if value is None else _val(value)}


def _window_view(w: dict, m: float, *, mini: bool = False) -> dict:
    """One window: its value, row and source, then its tokens (a twin comparison's: only those around the example
    token, cut marked)."""
    toks, vals, k = w["tokens"], w["values"], int(w["max_index"])
    lo, hi = (max(0, k - MINI_BEFORE), min(len(toks), k + MINI_AFTER + 1)) if mini else (0, len(toks))
    return {"cls": "window mini" if mini else "window", "value": _val(w["max_value"]), "row": int(w["doc_index"]),
            "token": k, "source": w["source"], "cut_before": lo > 0, "cut_after": hi < len(toks),
            "tokens": [_token_view(toks[i], vals[i], m, i == k) for i in range(lo, hi)]}


def histogram_geometry(hist: dict, width: int = 640, height: int = 170) -> dict:
    """Where `histogram.svg.j2` draws a histogram from its first to its last non-empty bin: one bar of equal width
    per non-empty bin (the bins may be log-spaced: the axis is the bin, its edges are labelled), height
    log(1 + count); the numbers as the SVG writes them."""
    edges, counts = [float(e) for e in hist["edges"]], [int(c) for c in hist["counts"]]
    left, right, top_pad, bottom = 10, 10, 8, 24
    pw, ph = width - left - right, height - top_pad - bottom
    used = [i for i, c in enumerate(counts) if c > 0] or [0]
    first, last = used[0], used[-1]
    n = last - first + 1
    x = lambda i: left + (i - first) / n * pw  # noqa: E731  (i: a bin's index; its left edge)
    scale = math.log1p(max(counts, default=0)) or 1.0
    base = top_pad + ph
    bars = []
    for i in range(first, last + 1):
        c = counts[i] if i < len(counts) else 0
        if c <= 0:
            continue
        h = max(ph * math.log1p(c) / scale, 1.0)
        bars.append({"x": f"{x(i):.2f}", "y": f"{base - h:.2f}", "width": f"{max(pw / n - 0.5, 1.0):.2f}",
                     "height": f"{h:.2f}", "lo": f"{edges[i]:.3g}", "hi": f"{edges[i + 1]:.3g}", "count": f"{c:,}"})
    labelled = len(edges) > last + 1  # False only for a histogram without bins: no edge to label
    zero = next((i for i in range(first, last + 1) if edges[i] == 0.0), None) if labelled else None
    return {"width": width, "height": height, "left": left, "right": left + pw, "top": top_pad, "base": base,
            "text_y": height - 6, "bars": bars, "zero": f"{x(zero):.2f}" if zero is not None and zero > first else None,
            "ends": (f"{edges[first]:.3g}", f"{edges[last + 1]:.3g}") if labelled else None}


def histogram_svg(hist: dict, width: int = 640, height: int = 170) -> str:
    """An inline SVG bar chart of a histogram (see `histogram_geometry`), one `<rect class="bar">` per non-empty
    bin."""
    return _TEMPLATES.get_template("histogram.svg.j2").render(svg=histogram_geometry(hist, width, height))


BOOK = "../../"  # the book's root, from the site root (_build/html/neurons/<run>/)
BOOK_PAGE = BOOK + "book/generated/explorer.html"  # the book's page about the explorer


def _links(here: str, prev=None, next_=None, random_=None) -> dict:
    """The navigation of the page at `here`: back to the book and its page about the explorer, the index, and the
    previous, next and random pages (None: no such page)."""
    return {"book": _href(BOOK + "index.html", here), "about": _href(BOOK_PAGE, here),
            "index": _href("index.html", here), "prev": prev, "next": next_, "random": random_}


def _neuron_view(twin: dict, here: str, with_pages) -> dict:
    """A twin's id and correlation, with a link to its page when its key is in `with_pages` (the keys of the
    records given, a dict or a set; any other page is not written: no link)."""
    key = (twin["model"], int(twin["layer"]), int(twin["neuron"]))
    return {"model": twin["model"], "label": neuron_label(*key), "corr": _corr(twin["correlation"]),
            "href": _href(page_path(*key), here) if key in with_pages else None}


# ---------------------------------------------------------------- pages

def neuron_page(record, records_by_key, *, profile, prev=None, next=None, random=None) -> str:  # noqa: A002
    """The HTML of one neuron's page. `records_by_key` maps (model, layer, neuron) to records (for the twins'
    windows and links); `prev`, `next`, `random` are relative hrefs to other pages, or None."""
    check_record(record)
    key = record_key(record)
    here, m = page_path(*key), scale_max(record)
    hist, vocab = record["histogram"], record["vocab"]
    twins = []
    for t in record["twins"]:
        twin = _neuron_view(t, here, records_by_key)
        other = records_by_key.get((t["model"], int(t["layer"]), int(t["neuron"])))
        if other is not None:
            check_record(other)
            m2 = scale_max(other)
            twin.update(scale=_val(m2), top=[_window_view(w, m2, mini=True) for w in other["top"][:MINI_WINDOWS]])
        else:
            twin.update(scale=None, top=None)
        twins.append(twin)
    return _TEMPLATES.get_template("neuron.html.j2").render(
        label=neuron_label(*key), role=record["role"], load=record["load"],
        css=_href(f"{STATIC_DIR}/explorer.css", here), links=_links(here, prev, next, random),
        row=[(k, _fmt(v)) for k, v in record["row"].items()],
        labels=[(k, _fmt(v, 3)) for k, v in record["labels"].items()],
        svg=histogram_geometry(hist), n_tokens=f"{int(record['n_tokens']):,}",
        frequency=f"{100 * float(record['frequency']):.2f}", below=f"{int(hist['below']):,}",
        above=f"{int(hist['above']):,}", scale=_val(m),
        steps=[(colour(v, m), _val(v)) for v in (m * i / 4 for i in range(5))],  # the legend's scale
        top=[_window_view(w, m) for w in record["top"]],
        quantiles=[{"lo": _fmt(q["range"][0], 3), "hi": _fmt(q["range"][1], 3),
                    "examples": [_window_view(w, m) for w in q["examples"]]} for q in record["quantiles"]],
        vocab_top=[(visible(t), _val(v)) for t, v in vocab.get("top", [])],
        vocab_bottom=[(visible(t), _val(v)) for t, v in vocab.get("bottom", [])],
        twins=twins, mini=[_window_view(w, m, mini=True) for w in record["top"][:MINI_WINDOWS]],
        profile=_profile_name(profile))


COLUMN_HELP = {  # plain text: the template escapes it
    "neuron": "the reference model's neuron (L<layer>.<index>), a link to its page",
    "layer": "its MLP layer (0 is the first)",
    "role": "universal: it passes the paper's rule (excess correlation above the threshold); top: one of the highest "
            "by excess correlation, shown when no neuron passes the rule; contrast: a random neuron of the rest, "
            "for comparison; discussed: a neuron the entropy or attention chapter discusses (and no other role "
            "gives a page)",
    "discussed in": "the chapter that discusses it and in which role (an entropy-neuron candidate, the neuron of "
                    "an attention pair it ablates)",
    "excess correlation": "the mean over the other seeds of its best match's correlation, minus the same against a "
                          "random rotation of their neurons (the paper's universality score)",
    "entropy rank (paper's view)": "its rank among this model's neurons as an entropy-neuron candidate, by the "
                                   "entropy chapter's reading of the paper (a large output-weight norm with a small "
                                   "variance over the vocabulary through the unembedding); 1 is the strongest "
                                   "candidate",
    "best BOS score": "the highest attention chapter score over the next layers' heads: how strongly its output "
                      "direction makes a head attend to the beginning-of-text token",
    "vocab class": "prediction or suppression when its output weights through the unembedding have a kurtosis above "
                   "the book's threshold (positive or negative skew), a dash otherwise",
    "best feature": "the token feature that explains most of its variance (the families chapter's pass)",
    "VR": "that feature's variance reduction (the share of the neuron's activation variance it explains)",
    "twins": "its best match in each other seed, with their correlation",
}


def index_page(records, *, profile, title) -> str:
    """The index: a sortable, filterable table of the reference's selected neurons (roles universal and
    contrast), then links to every other page by model."""
    records = list(records)
    for r in records:
        check_record(r)
    keys = {record_key(r) for r in records}
    reference = next((r["model"] for r in records if r["role"] in ("universal", "top", "contrast")),
                     next((r["model"] for r in records if r["role"] != "twin"), None))  # the seed the others match
    ref = sorted((r for r in records if r["role"] in REFERENCE_ROLES and r["model"] == reference), key=record_key)
    label_keys = [k for k in dict.fromkeys(k for r in ref for k in r["labels"])
                  if any(_fmt(r["labels"].get(k), 3) not in ("", "-") for r in ref)]  # a column that says something
    here = "index.html"
    n_top = sum(r["role"] == "top" for r in ref)
    compared = (f'{n_top} of the top by excess correlation, standing in for universal neurons' if n_top else
                f'{sum(r["role"] == "universal" for r in ref)} universal')
    rows = []
    for r in ref:
        model, layer, neuron = record_key(r)
        rows.append({"sort": f"{layer:04d}.{neuron:06d}", "href": _href(page_path(model, layer, neuron), here),
                     "label": neuron_label(model, layer, neuron), "layer": layer, "role": r["role"],
                     "excess": _fmt(r["row"].get("excess_corr"), 3),
                     "cells": [_fmt(r["labels"].get(k), 3) for k in label_keys],
                     "twins": [_neuron_view(t, here, keys) for t in r["twins"]]})
    columns = ["neuron", "layer", "role", "excess correlation", *label_keys, "twins"]
    ref_keys = {record_key(r) for r in ref}
    others = [(model, [{"href": _href(page_path(*k), here), "text": f"L{k[1]}.{k[2]}"} for k in group])
              for model, group in itertools.groupby(sorted(k for k in keys if k not in ref_keys), key=lambda k: k[0])]
    return _TEMPLATES.get_template("index.html.j2").render(
        title=title, css=f"{STATIC_DIR}/explorer.css", script=f"{STATIC_DIR}/table.js", links=_links(here),
        n_reference=len(ref), compared=compared, n_contrast=sum(r["role"] == "contrast" for r in ref),
        n_discussed=sum(r["role"] == "discussed" for r in ref), n_other=len(records) - len(ref),
        columns=columns, rows=rows, help=[(c, COLUMN_HELP[c]) for c in columns if c in COLUMN_HELP],
        others=others, profile=_profile_name(profile))


# ---------------------------------------------------------------- the site

def _random_key(key, ordered):
    """A deterministic "random" other page: chosen by the SHA-256 of the neuron's id."""
    others = [k for k in ordered if k != key]
    if not others:
        return None
    seed = int.from_bytes(hashlib.sha256(neuron_label(*key).encode()).digest()[:8], "big")
    return others[seed % len(others)]


def _static_bytes(name: str) -> bytes:
    return resources.files("universal_neurons").joinpath("explorer_static", name).read_bytes()


PAGES_JSON = "pages.json"  # the list of pages (model, layer, neuron, role, href): the book's explorer page reads it


def write_site(records, out_dir, *, profile, title: str = "Neuron explorer") -> dict:
    """Write `out_dir/index.html`, one page per record at `out_dir/<page_path>` and the static files under
    `out_dir/_static/`, each atomically. Pages chain (previous / next) in (layer, neuron) order within each model.
    Returns {"pages", "index", "static", "files", "bytes"}. Pages of earlier runs that are not rewritten stay."""
    records = list(records)
    by_key: dict = {}
    for r in records:
        check_record(r)
        key = record_key(r)
        if key in by_key:
            raise UserError(f"explorer record {neuron_label(*key)!r} appears twice; pass one record per neuron")
        by_key[key] = r
    out, ordered, total = Path(out_dir), sorted(by_key), 0
    for _, group in itertools.groupby(ordered, key=lambda k: k[0]):
        group = list(group)
        for i, key in enumerate(group):
            here = page_path(*key)
            link = lambda k: _href(page_path(*k), here) if k else None  # noqa: E731
            text = neuron_page(by_key[key], by_key, profile=profile, prev=link(group[i - 1] if i else None),
                               next=link(group[i + 1] if i + 1 < len(group) else None),
                               random=link(_random_key(key, ordered)))
            write_text(out / here, text)
            total += len(text.encode())
    text = index_page(records, profile=profile, title=title)
    write_text(out / "index.html", text)
    total += len(text.encode())
    listing = [{"model": k[0], "layer": k[1], "neuron": k[2], "role": by_key[k]["role"], "href": page_path(*k)}
               for k in ordered]
    text = json.dumps(listing)
    write_text(out / PAGES_JSON, text)
    total += len(text.encode())
    for name in STATIC_FILES:
        data = _static_bytes(name)
        with atomic_path(out / STATIC_DIR / name) as tmp:
            tmp.write_bytes(data)
        total += len(data)
    return {"pages": len(ordered), "index": 1, "static": len(STATIC_FILES),
            "files": len(ordered) + 2 + len(STATIC_FILES), "bytes": total}
