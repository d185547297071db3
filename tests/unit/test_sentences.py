"""Sentence splitting as people write: abbreviations, CJK, line breaks and list items, decimals, ellipses, quotes."""

# ruff: noqa: RUF001  (full-width and curly punctuation is what these tests are about)

from __future__ import annotations

import random

import pytest

from agentlog.agents.sentences import CONTEXT, boundaries, sentences


def split(text: str) -> list[str]:
    return [text[sentence.start : sentence.end] for sentence in sentences(text)]


def finished(text: str) -> list[str]:
    return [text[sentence.start : sentence.end] for sentence in sentences(text) if sentence.finished]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("We flew to St. Louis. It was hot.", ["We flew to St. Louis.", "It was hot."]),
        ("Dr. Watson met Mr. Holmes in London.", ["Dr. Watson met Mr. Holmes in London."]),
        ("Cities, e.g. Rome, i.e. capitals. Then home.", ["Cities, e.g. Rome, i.e. capitals.", "Then home."]),
        ("We climbed Mt. Fuji and saw Ft. Worth.", ["We climbed Mt. Fuji and saw Ft. Worth."]),
        ("J. R. R. Tolkien lived in Oxford.", ["J. R. R. Tolkien lived in Oxford."]),
        ("See No. 5 in Vol. 2 on pp. 12. Then stop.", ["See No. 5 in Vol. 2 on pp. 12.", "Then stop."]),
        ("I said no. Paris it is.", ["I said no.", "Paris it is."]),
        ("So do I. Then we left.", ["So do I.", "Then we left."]),
        ("He came 1st. Then Rome.", ["He came 1st.", "Then Rome."]),
    ],
)  # fmt: skip
def test_abbreviations(text: str, expected: list[str]) -> None:
    assert split(text) == expected


def test_cjk_and_other_end_punctuation() -> None:
    assert split("東京に行った。大阪も行った！本当？はい") == ["東京に行った。", "大阪も行った！", "本当？", "はい"]
    assert finished("東京に行った。大阪も") == ["東京に行った。"]
    assert split("「東京へ行こう。」と彼は言った。") == ["「東京へ行こう。」", "と彼は言った。"]
    assert split("Really?! Yes‼ ¿Dónde está Madrid? Aquí.") == ["Really?!", "Yes‼", "¿Dónde está Madrid?", "Aquí."]
    assert split("هل زرت القاهرة؟ نعم.") == ["هل زرت القاهرة؟", "نعم."]


def test_line_breaks_end_sentences_and_list_items_are_sentences() -> None:
    text = "Our trip\n- Paris\n- Rome and Milan\n* Oslo\n• Bergen\n1. Berlin\n  2) Munich\n(a) Lyon\niv. Nice\nNext"
    assert split(text) == ["Our trip", "Paris", "Rome and Milan", "Oslo", "Bergen", "Berlin", "Munich", "Lyon", "Nice",
                           "Next"]  # fmt: skip
    assert finished(text)[-1] == "Nice"  # "Next" is still being typed
    assert split("We met in\nParis.\r\nThen Rome.") == ["We met in", "Paris.", "Then Rome."]
    assert split("Lunch in Dr.\nWho knows.") == ["Lunch in Dr.", "Who knows."]
    assert split("1. Paris is first\n2. Rome is second") == ["Paris is first", "Rome is second"]


def test_decimals_and_dotted_words_do_not_split() -> None:
    assert split("It costs 3.5 euros in Paris. The rate is 1.08.") == [
        "It costs 3.5 euros in Paris.",
        "The rate is 1.08.",
    ]
    assert split("Version 2.0.1 shipped.Then we slept.") == ["Version 2.0.1 shipped.Then we slept."]
    assert split("See example.com for Paris.") == ["See example.com for Paris."]


def test_ellipses() -> None:
    assert split("Wait... what happened in Paris? Nothing…") == ["Wait... what happened in Paris?", "Nothing…"]
    assert split("We waited... Then Rome. And… then Milan.") == ["We waited...", "Then Rome.", "And… then Milan."]
    assert split("...") == []


def test_quotes_and_brackets() -> None:
    text = 'He said "Go to Paris." She went. "Why?" she asked. (We stayed in Rome.) Fine.'
    assert split(text) == ['He said "Go to Paris."', "She went.", '"Why?" she asked.', "(We stayed in Rome.)", "Fine."]
    assert split("“Lisbon?” he asked. ‘Porto.’ Done.") == ["“Lisbon?” he asked.", "‘Porto.’", "Done."]


def test_a_line_without_end_punctuation_is_finished_by_its_line_break() -> None:
    found = sentences("- Paris\nWe left.\nRome")
    assert [(s.finished, s.by_line) for s in found] == [(True, True), (True, False), (False, False)]


def test_unfinished_and_empty_text() -> None:
    assert sentences("") == []
    assert [(s.start, s.end, s.finished) for s in sentences("We met in Paris")] == [(0, 15, False)]
    assert [(s.start, s.end, s.finished) for s in sentences("  We met in Paris.  ")] == [(2, 18, True)]
    assert split(" - \n \n") == []


def test_a_window_agrees_with_the_whole_text_on_the_boundaries_it_trusts() -> None:
    """What lets the worker re-split only around an edit: boundaries CONTEXT inside a window are the text's."""
    pieces = ["Paris", " ", ". ", "St. ", "Louis", "é", "東京。", "\n", "- ", "1. ", "3.5", "...", "e.g. ", '"',
              "No. 5"]  # fmt: skip
    rng = random.Random(7)
    for _ in range(200):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(50, 300)))
        whole = set(boundaries(text))
        low = rng.randint(0, len(text))
        high = rng.randint(low, len(text))
        window = text[low:high]
        trusted = {low + cut for cut in boundaries(window) if CONTEXT <= cut <= len(window) - CONTEXT}
        assert trusted == {cut for cut in whole if low + CONTEXT <= cut <= high - CONTEXT}, (text, low, high)
