"""The static neuron explorer's pages (explorer.pages): hand-made records, checked by parsing the written HTML."""

import copy
import re
from html.parser import HTMLParser
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import pytest

from universal_neurons.core.errors import UserError
from universal_neurons.explorer.pages import (colour,
                                              histogram_svg,
                                              index_page,
                                              neuron_page,
                                              page_path,
                                              record_key,
                                              write_site)

VOID = {"meta", "link", "input", "br", "img", "hr", "line", "path"}


def window(tokens, values, max_index, doc=0, source="held-out"):
    vals = [v for v in values if v is not None]
    return {"tokens": tokens, "values": values, "max_value": max(vals), "max_index": max_index, "doc_index": doc,
            "source": source}


def record(model, layer, neuron, role, twins, top, **extra):
    r = {"model": model, "layer": layer, "neuron": neuron, "role": role,
         "load": f"m = load_model('{model}'); act = cache(m, text)['blocks.{layer}.mlp.hook_post'][..., {neuron}]",
         "row": {"excess_corr": 0.412345, "max_corr": 0.9}, "labels": {"family": "unigram", "VR": 1.5},
         "n_tokens": 1000, "frequency": 0.125,
         "histogram": {"edges": [-1.0, 0.0, 1.0, 2.0, 3.0], "counts": [3, 0, 5, 1], "below": 2, "above": 0},
         "top": top, "quantiles": [{"range": [0.0, 1.0], "examples": [window(["q", "uant"], [0.2, 0.9], 1, doc=4)]}],
         "vocab": {"top": [[" dog", 0.5], ["<b>", 0.4]], "bottom": [["\n", -0.3]]},
         "twins": [{"model": m, "layer": l, "neuron": n, "correlation": c} for m, l, n, c in twins]}
    r.update(extra)
    return r


@pytest.fixture
def records():
    a = record("seed-0", 1, 805, "universal", [("seed-1", 1, 33, 0.78), ("seed-2", 0, 7, 0.5)],
               [window(["The", " a<b", "&", "\n", "end"], [0.0, 0.5, 2.0, None, -0.1], 2, doc=17, source="pile"),
                window(["x", "y"], [1.0, 0.25], 0, doc=3)])
    b = record("seed-1", 1, 33, "twin", [("seed-0", 1, 805, 0.78)],
               [window(["twinword", " other"], [4.0, 1.0], 0, doc=9)], labels={})
    c = record("seed-0", 2, 3, "contrast", [], [window(["c"], [0.5], 0)], labels={"class": "noise"}, row={})
    d = record("seed-0", 0, 12, "universal", [], [window(["d", "e"], [0.1, 0.3], 1)])
    return [a, b, c, d]


class Page(HTMLParser):
    """Links, ids, token spans (with whether they sit in a twin comparison) and histogram bars of one page."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.stack, self.links, self.ids, self.tokens, self.bars, self.rels = [], [], set(), [], 0, {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("href", "src"):
            if k in a:
                self.links.append(a[k])
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("rel"):
            self.rels[a["rel"]] = a["href"]
        if tag == "a" and a.get("class") == "random":
            self.rels["random"] = a["href"]
        if tag == "rect" and a.get("class") == "bar":
            self.bars += 1
        if tag == "span" and "tok" in a.get("class", "").split() and any("toks" in c for _, c in self.stack):
            self.tokens.append({"cls": a["class"].split(), "title": a.get("title"), "style": a.get("style"),
                                "text": "", "pair": any(c == "pair" for _, c in self.stack)})
        if tag not in VOID:
            self.stack.append((tag, a.get("class", "")))

    def handle_endtag(self, tag):
        if tag not in VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1][0] == "span" and "tok" in self.stack[-1][1].split() and self.tokens \
                and any("toks" in c for _, c in self.stack):
            self.tokens[-1]["text"] += data


def by_key(records):
    return {record_key(r): r for r in records}


def test_page_path():
    assert page_path("seed-0", 1, 805) == "seed-0/L1N805.html"


def test_neuron_page_tokens_scale_and_twins(records):
    a = records[0]
    text = neuron_page(a, by_key(records), profile="smoke", prev="L0N12.html", next="L2N3.html", random=None)
    page = Page(text)
    assert "<title>seed-0 L1.805" in text and "seed-0 L1.805" in text
    assert "<pre><code>m = load_model(&#39;seed-0&#39;)" in text  # the load line, escaped
    # tokens: escaped in the source, visible whitespace, values in titles with 3 decimals
    assert "a&lt;b" in text and ">&amp;<" in text and "a<b" not in text
    mine = [t for t in page.tokens if not t["pair"]]
    texts = [t["text"] for t in mine]
    assert texts[:5] == ["The", " a<b", "&", "⏎", "end"]
    assert [t["title"] for t in mine[:5]] == ["0.000", "0.500", "2.000", "no value", "-0.100"]
    assert "none" in mine[3]["cls"] and mine[3]["style"] is None  # None: grey by class
    # the stated scale: white to red over [0, M], M = the largest top-window activation (2.0)
    assert "from white" in text and "to red" in text and "M = 2.000" in text
    assert mine[2]["style"] == f"background:{colour(2.0, 2.0)}" == "background:#e63c3c"
    assert mine[0]["style"] == "background:#ffffff" and mine[4]["style"] == "background:#ffffff"
    assert mine[1]["style"] == f"background:{colour(0.5, 2.0)}"
    # the example token outlined (only it, in its window)
    assert [t["text"] for t in mine[:5] if "ex" in t["cls"]] == ["&"]
    assert "row 17" in text and "pile" in text
    # twins: the link, the missing twin without a link, the twin's mini windows beside this neuron's
    assert '<a href="../seed-1/L1N33.html">seed-1 L1.33</a>' in text
    assert "seed-2 L0.7" in text and "seed-2/" not in text
    pair = [t["text"] for t in page.tokens if t["pair"]]
    assert "twinword" in pair and "&" in pair
    assert "scale 0 to 4.000" in text  # the twin's own scale
    # nav: index, prev, next; no random link given
    assert page.rels["index"] == "../index.html" and page.rels["prev"] == "L0N12.html" and "random" not in page.rels
    assert "<script" not in text  # the neuron pages need no JavaScript
    # histogram: one bar per non-empty bin, frequency stated
    assert page.bars == 3 and "12.50%" in text
    assert "http://" not in text and "https://" not in text


def test_histogram_bars():
    svg = histogram_svg({"edges": [0, 1, 2, 3, 4, 5], "counts": [0, 1, 0, 100, 7], "below": 0, "above": 0})
    assert svg.count('class="bar"') == 3 and svg.startswith("<svg")


def test_write_site_links_resolve(records, tmp_path):
    out = tmp_path / "html" / "neurons" / "smoke"
    book = {(tmp_path / "html" / "index.html").resolve(),
            (tmp_path / "html" / "book" / "generated" / "explorer.html").resolve()}
    back = set()
    stats = write_site(records, out, profile="smoke")
    pages = sorted(out.rglob("*.html"))
    assert stats["pages"] == 4 and stats["files"] == 4 + 1 + 1 + 2 and len(pages) == 5  # pages, index, list, static
    assert stats["bytes"] == sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    assert not [f for f in out.rglob("*") if f.name.endswith(".tmp")]
    assert (out / "_static" / "explorer.css").is_file() and (out / "_static" / "table.js").is_file()
    for f in out.rglob("*"):
        if f.is_file():
            text = f.read_text(encoding="utf-8")
            assert "http://" not in text and "https://" not in text, f
            assert "@import" not in text and "url(" not in text, f
    for f in pages:
        page = Page(f.read_text(encoding="utf-8"))
        assert page.links, f
        for link in page.links:
            if link == "data:,":  # the empty icon: nothing to fetch
                continue
            parts = urlsplit(link)
            assert not parts.scheme and not parts.netloc and not link.startswith("/"), (f, link)
            target = (f.parent / unquote(parts.path)).resolve() if parts.path else f.resolve()
            if not target.is_relative_to(out.resolve()):  # the way back to the book, two folders up
                assert target in book, (f, link)
                back.add((f, target))
                continue
            assert target.is_file(), (f, link)
            if parts.fragment:
                assert parts.fragment in Page(target.read_text(encoding="utf-8")).ids, (f, link)
    assert {(f, t) for f in pages for t in book} == back, "every page links back to the book and its explorer page"
    import json

    listing = json.loads((out / "pages.json").read_text())
    assert sorted((p["model"], p["layer"], p["neuron"]) for p in listing) == sorted(record_key(r) for r in records)
    assert all((out / p["href"]).is_file() for p in listing)


def test_index_and_chains(records, tmp_path):
    out = tmp_path / "site"
    write_site(records, out, profile="smoke", title="Explorer <test>")
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "<h1>Explorer &lt;test&gt;</h1>" in index and '<table class="sortable index">' in index
    links = Page(index).links
    for r in records:
        if r["role"] in ("universal", "contrast"):
            assert page_path(*record_key(r)) in links
    assert "seed-1/L1N33.html" in links  # the twin reached from the index too
    assert "0.412" in index and "<th>family</th>" in index and "<th>class</th>" in index
    assert "<dt>excess correlation</dt>" in index and "<dt>twins</dt>" in index  # the columns explained
    table = index.split("<tbody>")[1].split("</tbody>")[0]
    assert table.count("<tr>") == 3  # the reference's neurons only
    # previous / next chain through every page of each model, in (layer, neuron) order
    for model in ("seed-0", "seed-1"):
        expected = sorted(record_key(r) for r in records if r["model"] == model)
        paths = [out / page_path(*k) for k in expected]
        chain, f = [], paths[0]
        assert "prev" not in Page(f.read_text(encoding="utf-8")).rels
        while f:
            chain.append(f)
            nxt = Page(f.read_text(encoding="utf-8")).rels.get("next")
            f = (f.parent / nxt).resolve() if nxt else None
        assert [p.resolve() for p in chain] == [p.resolve() for p in paths]
        for before, after in zip(paths, paths[1:]):
            prev = Page(after.read_text(encoding="utf-8")).rels["prev"]
            assert (after.parent / prev).resolve() == before.resolve()
    # the random link is deterministic: a second write gives the same pages
    first = {f: f.read_bytes() for f in out.rglob("*.html")}
    write_site(list(reversed(records)), out, profile="smoke", title="Explorer <test>")
    assert {f: f.read_bytes() for f in out.rglob("*.html")} == first
    assert index_page(records, profile="smoke", title="t").count("<tr>") == 4  # header + 3 rows


def test_index_drops_columns_that_say_nothing(records):
    """A label that is empty or "-" for every compared neuron is no column; one that says something somewhere is."""
    for r in records:
        r["labels"] = dict(r["labels"], **{"vocab class": "-", "entropy rank (paper's view)": 3})
    records[0]["labels"]["best BOS score"] = 0.25
    index = index_page(records, profile="smoke", title="t")
    head = index.split("<thead>")[1].split("</thead>")[0]
    assert "vocab class" not in head and "entropy rank (paper&#39;s view)" in head and "best BOS score" in head
    assert "<dt>entropy rank (paper&#39;s view)</dt>" in index and "<dt>vocab class</dt>" not in index


@pytest.mark.parametrize("change, words", [
    (lambda r: r.pop("top"), "missing key top"),
    (lambda r: r["histogram"].update(edges=[0.0, 1.0]), "2 edges for 4 counts"),
    (lambda r: r["top"][0]["values"].pop(), "different lengths"),
    (lambda r: r["top"][1].pop("source"), "top window 1 lacks source"),
    (lambda r: r.update(role="other"), "role 'other'"),
    (lambda r: r.update(model="../x"), "cannot name a folder"),
    (lambda r: r["twins"][0].pop("correlation"), "twin 0 lacks"),
])
def test_bad_records_are_one_line_errors(records, tmp_path, change, words):
    bad = copy.deepcopy(records)
    change(bad[0])
    with pytest.raises(UserError) as e:
        write_site(bad, tmp_path / "out", profile="smoke")
    msg = str(e.value)
    assert "\n" not in msg and words in msg and ";" in msg, msg
    assert not (tmp_path / "out").exists()  # nothing written: the records are checked first


def test_duplicate_record(records, tmp_path):
    with pytest.raises(UserError, match=r"appears twice"):
        write_site(records + [copy.deepcopy(records[0])], tmp_path / "out", profile="smoke")


def test_escaping_of_record_strings(records):
    a = copy.deepcopy(records[0])
    a["labels"] = {"fam<ily>": "<script>alert(1)</script>"}
    a["top"][0]["source"] = 'a"b<c>'
    text = neuron_page(a, {}, profile="smoke")
    assert "<script>" not in text and "&lt;script&gt;" in text and "fam&lt;ily&gt;" in text
    assert "a&#34;b&lt;c&gt;" in text
    assert re.search(r"seed-1 L1\.33 <span class=\"note\">\(no page\)</span>", text)  # no record: no link


class Elements(HTMLParser):
    """Every element of a page: its tag, attributes, parent and text content, entities decoded by the parser."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.all, self.open = [], []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        e = {"tag": tag, "attrs": dict(attrs), "text": "", "parent": self.open[-1] if self.open else None}
        self.all.append(e)
        if tag not in VOID:
            self.open.append(e)

    def handle_startendtag(self, tag, attrs):
        self.all.append({"tag": tag, "attrs": dict(attrs), "text": "", "parent": self.open[-1] if self.open else None})

    def handle_endtag(self, tag):
        if tag not in VOID and self.open:
            self.open.pop()

    def handle_data(self, data):
        for e in self.open:
            e["text"] += data

    def texts(self, tag, inside=None, **attrs):
        """The text of each `tag` element with these attributes, within an element of class `inside` if given."""
        def within(e):
            while e["parent"] is not None:
                e = e["parent"]
                if inside in e["attrs"].get("class", "").split():
                    return True
            return False
        return [e["text"] for e in self.all if e["tag"] == tag and (inside is None or within(e))
                and all(e["attrs"].get(k) == v for k, v in attrs.items())]


def test_markup_and_quotes_in_record_strings_come_out_as_text(records):
    """Tokens, labels, a window's source, output tokens, the profile's name, the title and the nav links holding
    markup and quotes: no raw <script> in either page, and a standard HTML parser reads back exactly the strings
    given (a quote cannot close an attribute, a tag cannot open)."""
    xss, quoted = "<script>alert(1)</script>", 'a "quoted" \'word\' & more'
    a = copy.deepcopy(records[0])
    tokens = [xss, quoted, '"', "x"]
    a["top"] = [window(tokens, [0.5, 1.0, 2.0, 0.1], 2, doc=5, source=quoted)]
    a["labels"] = {xss: quoted, "family": xss}
    a["vocab"] = {"top": [[xss, 0.5], ['"', 0.25]], "bottom": []}
    a["quantiles"] = []
    prev = 'L0N1.html" onmouseover="alert(1)'
    profile = SimpleNamespace(run_name=quoted + xss)
    text = neuron_page(a, {}, profile=profile, prev=prev, next=xss)
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    page = Elements(text)
    assert not [k for e in page.all for k in e["attrs"] if k.startswith("on")]  # the quote closed no attribute
    assert [e["attrs"]["href"] for e in page.all if e["attrs"].get("rel") == "prev"] == [prev, prev]  # nav twice
    assert [e["attrs"]["href"] for e in page.all if e["attrs"].get("rel") == "next"] == [xss, xss]
    assert page.texts("span", inside="toks") == tokens
    assert page.texts("div", **{"class": "meta"}) == [f"2.000 · row 5 · token 2 · {quoted}"]
    assert page.texts("th", inside="labels") == [xss, "family"] and page.texts("td", inside="labels") == [quoted, xss]
    assert page.texts("span", **{"class": "tokname"}) == [xss, '"']
    assert page.texts("footer")[0].startswith(f"Profile {quoted}{xss} · ")

    title = f"Explorer {xss} {quoted}"
    index = index_page([a], profile=profile, title=title)
    assert index.count("<script") == 1 and '<script src="_static/table.js" defer></script>' in index  # its own
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    page = Elements(index)
    assert page.texts("title") == [title] and page.texts("h1") == [title]
    assert page.texts("th", inside="index")[4:6] == [xss, "family"]
    assert page.texts("td", inside="index")[:6] == ["seed-0 L1.805", "1", "universal", "0.412", quoted, xss]
    assert page.texts("dt") == ["neuron", "layer", "role", "excess correlation", "twins"]
    assert page.texts("footer") == [f"Profile {quoted}{xss}."]


def test_discussed_neurons_get_pages_the_reference_s_in_the_index(records, tmp_path):
    """A neuron a chapter discusses gets a page (role discussed): the reference's in the index table with where it
    is discussed, another seed's among the other pages."""
    records.append(record("seed-0", 0, 66, "discussed", [], [window(["e"], [0.4], 0)],
                          labels={"discussed in": "entropy chapter: entropy (paper's view)"}, row={"excess_corr": 0.1}))
    records.append(record("seed-2", 1, 23, "discussed", [], [window(["f"], [0.2], 0)], labels={}, row={}))
    out = tmp_path / "site"
    write_site(records, out, profile="smoke", title="t")
    index = (out / "index.html").read_text(encoding="utf-8")
    table = index.split("<tbody>")[1].split("</tbody>")[0]
    assert table.count("<tr>") == 4 and "seed-0/L0N66.html" in table and "seed-2/L1N23.html" not in table
    assert "entropy chapter: entropy (paper&#39;s view)" in table and "<dt>discussed in</dt>" in index
    assert "seed-2/L1N23.html" in Page(index).links and (out / "seed-2" / "L1N23.html").is_file()
    assert "1 discussed by a chapter" in index
