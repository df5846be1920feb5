"""Entity spotting: English names, titles, quantities and dates; Chinese through jieba."""

from __future__ import annotations

from datetime import date

from rag_memory.text.entities import extract_entities, resolve_period

SAID = date(2023, 5, 8)  # a Monday


def spotted(text: str, **kw) -> list[tuple[str, str]]:
    return [(m.name, m.kind) for m in extract_entities(text, when=SAID, **kw)]


def test_capitalised_spans_titles_and_quantities():
    found = spotted('We read "Becoming Nicole" by Amy Ellis Nutt in Boston and ran 5 km for $40.')
    assert ("Becoming Nicole", "title") in found
    assert ("Amy Ellis Nutt", "name") in found
    assert ("Boston", "place") in found
    assert ("5 km", "quantity") in found and ("$40", "quantity") in found


def test_common_words_opening_a_sentence_are_not_names_but_speakers_are_people():
    found = spotted("Thanks, Caroline! Wow. Sounds great. I went camping.", speakers={"Caroline"})
    assert found == [("Caroline", "person")]
    assert spotted("Hey! Yes. Okay.") == []


def test_dates_are_normalised_against_when_they_were_said():
    assert spotted("I went there yesterday.") == [("2023-05-07", "date")]
    assert spotted("We moved last month.") == [("2023-04", "date")]
    assert spotted("It was last week.") == [("2023-W18", "date")]
    assert spotted("I ran last Saturday.") == [("2023-05-06", "date")]
    assert spotted("Two weeks ago I quit.") == [("2023-W17", "date")]
    assert spotted("On 7 May 2023 and on June 3.") == [("2023-05-07", "date"), ("2023-06-03", "date")]
    assert spotted("It opened in 2021.") == [("2021", "date")]
    # without a moment, a relative date cannot be resolved, an absolute one still can
    assert [(m.name, m.kind) for m in extract_entities("yesterday, 2023-05-01")] == [("2023-05-01", "date")]


def test_chinese_people_places_organisations_and_dates():
    found = spotted("我换到成都工作了，和张伟一起在腾讯上班，上个月去了北京。")
    assert ("成都", "place") in found and ("北京", "place") in found
    assert ("张伟", "person") in found
    assert ("腾讯", "name") in found or ("腾讯", "organisation") in found
    assert ("2023-04", "date") in found
    assert ("2023-05-07", "date") in spotted("我昨天跑了5公里")
    assert ("5公里", "quantity") in spotted("我昨天跑了5公里")
    assert ("2022-03", "date") in spotted("2022年3月我搬家了")


def test_keys_match_whatever_the_case():
    [m] = extract_entities("paris", when=SAID) or [None]  # lower case is not a name on its own...
    assert m is None
    [p] = extract_entities("Paris", when=SAID)
    assert p.key == "paris"


def test_periods_cover_the_days_of_a_date_key():
    assert resolve_period("2023-05-07") == (date(2023, 5, 7), date(2023, 5, 7))
    assert resolve_period("2023-W18") == (date(2023, 5, 1), date(2023, 5, 7))
    assert resolve_period("2023-02") == (date(2023, 2, 1), date(2023, 2, 28))
    assert resolve_period("2023") == (date(2023, 1, 1), date(2023, 12, 31))
    assert resolve_period("not a date") is None
