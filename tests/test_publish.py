"""What a chapter hands its page: tables whose neuron ids link to the neuron explorer."""


def test_linked_html_links_known_neuron_ids_and_escapes_the_rest():
    import pandas as pd

    from universal_neurons.publish import linked_html

    df = pd.DataFrame({"neuron": pd.array(["L1.2", "<b>L0.3</b> & L1.2"], dtype="string"), "x": [1.5, 2.0],
                       "pair": ["L1.2 → L2.H0", "none"]})
    html = linked_html(df, {"L1.2": "../p/L1N2.html"})
    assert html.count('<a href="../p/L1N2.html">L1.2</a>') == 3
    assert "&lt;b&gt;L0.3&lt;/b&gt; &amp; " in html and "L0.3</a>" not in html
    assert 'class="dataframe"' in html and "1.5" in html
    assert '<a href="a">' not in linked_html(pd.DataFrame({"n": ["L1.21"]}), {"L1.2": "a"})  # whole ids only
