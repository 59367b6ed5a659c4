"""What a chapter hands its page: tables whose neuron ids link to the neuron explorer."""


def test_linked_html_links_known_neuron_ids_and_escapes_the_rest():
    import pandas as pd

    from universal_neurons.book.publish import linked_html

    df = pd.DataFrame({"neuron": pd.array(["L1.2", "<b>L0.3</b> & L1.2"], dtype="string"), "x": [1.5, 2.0],
                       "pair": ["L1.2 → L2.H0", "none"]})
    html = linked_html(df, {"L1.2": "../p/L1N2.html"})
    assert html.count('<a href="../p/L1N2.html">L1.2</a>') == 3
    assert "&lt;b&gt;L0.3&lt;/b&gt; &amp; " in html and "L0.3</a>" not in html
    assert 'class="dataframe"' in html and "1.5" in html
    assert '<a href="a">' not in linked_html(pd.DataFrame({"n": ["L1.21"]}), {"L1.2": "a"})  # whole ids only


def test_values_as_shown_formats_as_the_pages_do(tmp_path):
    import pandas as pd

    from universal_neurons.book.publish import as_shown, glue_spec, values_as_shown

    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "rob.py").write_text("# share {glue:text}`rob_share:.2f`% and {glue:text}`rob_n`\n"
                                                   "# {glue:text}`rob_share_x:.1%`\n")
    assert glue_spec("rob", "rob_share", tmp_path) == ".2f" and glue_spec("rob", "rob_n", tmp_path) is None
    assert glue_spec("rob", "rob_share_x", tmp_path) == ".1%" and glue_spec("nope", "k", tmp_path) is None
    assert as_shown("83.349609375", ".2f") == "83.35"
    assert as_shown("83.349609375", None) == "83.35"  # four significant digits when the page gives no format
    assert as_shown("0.000123456", None) == "0.0001235" and as_shown("12", None) == "12"
    assert as_shown("36864", None) == "36,864" and as_shown("holds", None) == "holds"
    values = pd.DataFrame({"#": [1, 1, 2], "chapter": ["rob", "rob", "rob"], "key": ["rob_share", "rob_n", "v"],
                           "value": ["4.1666666", "7", "direction only"]})
    assert list(values_as_shown(values, tmp_path)["value"]) == ["4.17", "7", "direction only"]
    assert list(values["value"]) == ["4.1666666", "7", "direction only"]  # the table read is unchanged


def test_a_chapter_kernel_keeps_progress_warnings_and_reprs_off_the_page():
    """In a real kernel, after `from universal_neurons.book import publish`: tqdm bars (imported before or after),
    Hugging Face's bars, warnings and log lines put nothing on the page; a Series shows as an HTML table; a long
    cell is not cut at 50 characters."""
    import nbformat
    from nbclient import NotebookClient

    cells = ["from tqdm import tqdm as early\nfrom universal_neurons.book import publish",
             "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='bar'): pass\nfor _ in early(range(3)): pass",
             "import warnings; warnings.warn('careful')",
             "import logging; logging.getLogger('x').warning('logged')",
             "from transformers.utils import logging as L\nfor _ in L.tqdm(range(2), desc='Writing model shards'): pass",
             "import pandas as pd; pd.Series({'profile': 'x' * 80, 'seconds': 12.8}, name='run')",
             "pd.DataFrame({'long': ['y' * 80]})"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    streams = [o for c in nb.cells for o in c.outputs if o["output_type"] == "stream"]
    assert streams == [], streams
    series = nb.cells[5].outputs[0]["data"]
    assert "dtype" not in series["text/html"] and "x" * 80 in series["text/html"] and "12.8" in series["text/html"]
    assert "y" * 80 in nb.cells[6].outputs[0]["data"]["text/html"]


def test_a_figure_that_shows_nothing_is_a_sentence_not_a_numbered_figure():
    from universal_neurons.book.publish import figure_markdown

    md = figure_markdown("fig-x-a", "A caption.\n")
    assert md == "```{glue:figure} fig-x-a\n:name: fig-x-a\n\nA caption.\n```"
    assert figure_markdown("fig-x-a", "A caption.", absent="No neuron here.") == "No neuron here."


def test_an_empty_table_is_a_sentence():
    import pandas as pd
    from IPython.display import HTML, Markdown

    from universal_neurons.book.publish import Chapter, table

    ch = Chapter("x", None, tables={"t": pd.DataFrame(columns=["neuron"]), "u": pd.DataFrame({"neuron": ["L0.1"]})},
                 data={"_links": {}})
    shown = table(ch, "t", empty="No neuron here.")
    assert isinstance(shown, Markdown) and shown.data == "No neuron here."
    assert isinstance(table(ch, "u", empty="No neuron here."), HTML)
    assert isinstance(table(ch, "t"), HTML)  # no sentence given: the table as it is


def test_linked_ids_in_glued_markdown():
    from universal_neurons.book.publish import linked_ids

    links = {"L0.90": "../../neurons/r/seed-0/L0N90.html"}
    assert linked_ids("L0.90 → L1.H1", links) == '<a href="../../neurons/r/seed-0/L0N90.html">L0.90</a> → L1.H1'
    assert linked_ids("L0.9 and L0.901", links) == "L0.9 and L0.901"  # whole ids only, unknown ids plain


def test_the_injected_parameters_cell_is_tagged_off_the_page(tmp_path):
    """The Makefile's step after papermill: only the injected cell gets `remove-cell`, once; the rest unchanged."""
    import json

    from universal_neurons.book.injected import remove_injected_parameters

    cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "profile = 'smoke'"},
             {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": "profile = 'default'"},
             {"cell_type": "markdown", "metadata": {}, "source": "# Title"}]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    for _ in range(2):
        remove_injected_parameters(path)
    got = json.loads(path.read_text())["cells"]
    assert [c["metadata"].get("tags") for c in got] == [["parameters"], ["injected-parameters", "remove-cell"], []]
