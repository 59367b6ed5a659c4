"""The sentence helpers: counts agree with their nouns and verbs; "a"/"an" by sound."""

import pytest

from universal_neurons.book import words


@pytest.mark.parametrize("n, want", [(0, "0 neurons"), (1, "1 neuron"), (2, "2 neurons"), (1024, "1,024 neurons")])
def test_plural(n, want):
    assert words.plural(n, "neuron") == want


def test_irregular_plural_and_verbs():
    assert words.plural(1, "family", "families") == "1 family"
    assert words.plural(3, "family", "families") == "3 families"
    assert words.counted(1, "neuron", "passes", "pass") == "1 neuron passes"
    assert words.counted(0, "neuron", "passes", "pass") == "0 neurons pass"
    assert words.counted(1, "pair", "has", "have") == "1 pair has"
    assert words.verb(2, "is", "are") == "are"


@pytest.mark.parametrize("word, want", [("alphabet", "an"), ("unigram", "a"), ("previous-token", "a"),
                                        ("syntax", "a"), ("position", "a"), ("entropy", "an"), ("hour", "an"),
                                        ("MLP", "an"), ("L1.23", "an"), ("GPT2", "a"), ("8-layer", "an"),
                                        ("one-layer", "a"), ("anti-entropy", "an"), ("universal", "a"),
                                        ("untrained", "an"), ("`alphabet`", "an")])
def test_article(word, want):
    assert words.article(word) == want
    assert words.with_article(word) == f"{want} {word}"


def test_prediction_role_counts():
    from universal_neurons.book.chapters.prediction import role_count

    assert role_count(0, "prediction") == "0 neurons are prediction neurons"
    assert role_count(1, "suppression") == "1 neuron is a suppression neuron"
    assert role_count(2, "partition") == "2 neurons are partition neurons"
