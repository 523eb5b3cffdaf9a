"""Reading @name[value] answer formats into rules, and applying them (ci_magic/evaluation/answer_format.py)."""

from __future__ import annotations

from ci_magic.evaluation.answer_format import normalize, normalize_text, parse, problems


def test_rules_read_from_where_clauses() -> None:
    rules = parse(
        '@avg_price[avg] @p_value[p] @verdict[verdict] where "avg" is a float rounded to two decimal places, '
        '"p" is a number between 0 and 1, rounded to four decimal places, and "verdict" is a string that can '
        'be either "higher" or "not higher".'
    )
    assert rules["avg_price"].decimals == 2 and rules["p_value"].decimals == 4
    assert rules["verdict"].options == ("higher", "not higher") and rules["verdict"].decimals is None


def test_grouped_placeholders_share_a_description() -> None:
    rules = parse(
        '@low[low_n] @high[high_n] @share[share] where "low_n" and "high_n" are positive integers. '
        'where "share" is a number rounded to 3 decimal places.'
    )
    assert rules["low"].integer and rules["high"].integer and rules["share"].decimals == 3


def test_description_inside_the_brackets_and_bare_names() -> None:
    rules = parse(
        '@kind[A string, either "Up" or "Down"] @slope[The fitted slope, rounded to one decimal place] '
        "@days[d] where d is rounded to the nearest whole number"
    )
    assert rules["kind"].options == ("Up", "Down")
    assert rules["slope"].decimals == 1 and rules["days"].decimals == 0


def test_prose_words_are_not_mistaken_for_placeholders() -> None:
    # "mean" appears bare in the prose of another value's description: it must not start a description.
    rules = parse(
        '@m[mean], @s[std] where "mean" and "std" are the mean and standard deviation, rounded to two decimals.'
    )
    assert rules["m"].decimals == 2 and rules["s"].decimals == 2


def test_nothing_is_guessed_when_the_format_says_nothing() -> None:
    rules = parse("@names[name1, name2] where the names are sorted alphabetically")
    assert rules["names"].decimals is None and not rules["names"].options and not rules["names"].integer


def test_normalize_rounds_only_what_the_format_asks() -> None:
    rules = parse(
        '@a[x] @b[y] @c[z] where "x" is rounded to 2 decimal places, "y" is an integer, "z" is a name'
    )
    assert normalize(rules, "a", "40.82148440366972") == "40.82"
    assert (
        normalize(rules, "a", "17.7") == "17.7"
    )  # fewer decimals are not padded: numbers compare as numbers
    assert normalize(rules, "a", "1.2e-05") == "0.0"
    assert normalize(rules, "b", "871.0") == "871"
    assert normalize(rules, "b", "2081990.36") == "2081990"
    assert normalize(rules, "c", "3.14159") == "3.14159"
    assert normalize(rules, "unknown", "1.23456") == "1.23456"
    text = "some text 1.23456\n@a[3.14159]\n@b[12.0]\n@c[Alice]\n"
    assert normalize_text(rules, text) == "some text 1.23456\n@a[3.14]\n@b[12]\n@c[Alice]\n"


def test_problems_name_words_outside_the_listed_ones() -> None:
    rules = parse('@trend[t] where "t" is a string, one of "rising", "falling" or "flat"')
    assert problems(rules, {"trend": "rising"}) == []
    (why,) = problems(rules, {"trend": "0.53"})
    assert '"rising" or "falling" or "flat"' in why and "'0.53'" in why
    (why,) = problems(rules, {"trend": "Rising"})
    assert 'write "rising" exactly' in why


def test_composite_values_are_normalized_part_by_part() -> None:
    rules = parse(
        '@peak[month, year, level] where "month" is an integer between 1 and 12, "year" is an integer, and '
        '"level" is a float rounded to two decimal places.'
    )
    assert [(r.integer, r.decimals) for r in rules["peak"].parts] == [(True, None), (True, None), (False, 2)]
    assert normalize(rules, "peak", "1.0, 2018.0, 88.3214") == "1, 2018, 88.32"
    assert normalize(rules, "peak", "January 2018") == "January 2018"  # not three parts: left alone


def test_printed_lists_become_the_formats_comma_separated_items() -> None:
    rules = parse('@rows[r] @names[n] where "r" is a list of integers and "n" are column names')
    assert normalize_text(rules, "@rows[[]]\n") == "@rows[]\n"
    assert normalize_text(rules, "@rows[[3, 17]]\n@names[['b', \"a\"]]\n") == "@rows[3, 17]\n@names[b, a]\n"
    assert normalize_text(rules, "@names[a [b] c]") == "@names[a [b] c]"  # not a list: untouched


def test_several_numbers_where_one_is_asked_are_sent_back() -> None:
    rules = parse(
        '@p[p] @label[l] where "p" is rounded to 4 decimal places and "l" is a float with 2 decimals'
    )
    (why,) = problems(rules, {"p": "[2.06e-04 1.92e-04]"})
    assert "must be a single number" in why
    assert problems(rules, {"p": "0.0002", "label": "Ratio"}) == []  # a word is not "several numbers"
