"""Small helpers for sentences built from numbers: a count with its noun in the right number, a verb that agrees
with it, and "a" or "an" before a word."""

from __future__ import annotations

import re

# spoken with a consonant sound though spelt with a vowel ("a unigram", "a one-layer", "a Euclidean")
_CONSONANT_SOUND = re.compile(r"(uni|use|usu|uti|ure|one|once|eu|ewe)", re.I)
_VOWEL_SOUND = re.compile(r"(hour|honest|honou?r|heir)", re.I)  # spelt with a consonant, spoken with a vowel
_VOWEL_LETTERS = set("AEFHILMNORSX")  # letters whose names start with a vowel sound ("an L0 neuron", "an MLP")


def article(word: str) -> str:
    """"a" or "an" for `word` (by its sound: "an alphabet", "a unigram", "an hour", "an MLP", "an L1 neuron")."""
    w = str(word).strip().lstrip("`*_(\"'")
    if not w:
        return "a"
    if w[0].isdigit():
        return "an" if re.match(r"(8|11|18)(\D|$)|8\d\d", w) else "a"
    head = re.match(r"[A-Za-z]+", w)
    if head and head[0].isupper() and (len(head[0]) > 1 or not w[1:2].isalpha()):  # an acronym or a letter
        return "an" if head[0][0] in _VOWEL_LETTERS else "a"
    if _VOWEL_SOUND.match(w):
        return "an"
    if _CONSONANT_SOUND.match(w):
        return "a"
    return "an" if w[0].lower() in "aeiou" else "a"


def with_article(word: str) -> str:
    """`word` after its article: "an alphabet"."""
    return f"{article(word)} {word}"


def plural(n, noun: str, nouns: str | None = None) -> str:
    """"1 neuron", "0 neurons", "1,024 neurons": the count (thousands separated) and `noun` in agreement with it
    (`nouns`: an irregular plural; default noun + "s")."""
    n = int(n)
    return f"{n:,} {noun if n == 1 else (nouns or noun + 's')}"


def verb(n, singular: str, plural_form: str) -> str:
    """The verb that agrees with a count: verb(1, "passes", "pass") is "passes"."""
    return singular if int(n) == 1 else plural_form


def counted(n, noun: str, singular_verb: str = "", plural_verb: str = "", nouns: str | None = None) -> str:
    """"1 neuron passes", "3 neurons pass": a count, its noun and (optionally) its verb, all in agreement."""
    text = plural(n, noun, nouns)
    return f"{text} {verb(n, singular_verb, plural_verb)}" if singular_verb else text
