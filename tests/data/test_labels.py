"""Label grouping from configuration (leipzig, aami, a custom scheme given with --set)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pedstream.cli import cli
from pedstream.config import LabelScheme, load_config
from pedstream.data.labels import LabelGrouping, parse_pattern
from pedstream.errors import ConfigError


def test_parse_pattern():
    assert parse_pattern("N") == ("N", "")
    assert parse_pattern("X:AVRT") == ("X", "AVRT")
    assert parse_pattern("+:*") == ("+", None)
    assert parse_pattern("/:/A") == ("/", "/A")
    with pytest.raises(ConfigError, match="has no symbol"):
        parse_pattern(":x")


def test_leipzig_default_grouping():
    g = LabelGrouping.from_config(load_config())
    assert g.classes[:4] == ["sinus", "preexcited", "rbbb", "avrt"] and g.classes[-1] == "other"
    name = g.class_name
    assert name("N", "") == "sinus" and name("N", "N-Prex") == "preexcited"
    assert name("X", "AVRT") == "avrt" and name("X", "avrt") == "avrt"
    assert name("X", "AVNRT+BII") == "avnrt" and name("X", "avnrt") == "avnrt"
    assert name("X", "VT") == "vt" and name("X", "AFL") == "af_afl"
    assert name("/", "/A") == "atrial_paced" and name("/", "/V") == "ventricular_paced"
    assert name("A", "A-Prex") == "pac" and name("J", "") == "pjc" and name("V", "") == "pvc"
    # specific X patterns win over the X:* wildcard; unknown mechanisms fall into it
    assert name("X", "EAT") == "other" and name("X", "SOMETHING") == "other"
    assert name("b", "BI") == "other"
    # ignore list: rhythm and quality markers, unclassifiable beats
    for sym, aux in [("+", "(AVRT"), ("~", ""), ("Q", "")]:
        assert g.label(sym, aux) is None
    # unmatched -> other (e.g. an N with an unexpected aux)
    assert name("N", "weird") == "other"
    counts = g.counts(["N", "N", "X", "+", "Q"], ["", "N-Prex", "AVRT", "(N", ""])
    assert counts["sinus"] == 1 and counts["preexcited"] == 1 and counts["avrt"] == 1
    assert sum(counts.values()) == 3 and set(counts) == set(g.classes)


def test_aami_grouping_ignores_unmatched():
    g = LabelGrouping.from_config(load_config(overrides=["labels.scheme=aami"]))
    assert g.classes == ["N", "S", "V", "F", "Q"]
    assert [g.class_name(s) for s in "NLRejAaJSVEF/fQ"] == list("NNNNNSSSSVVFQQQ")
    assert g.label("+", "(N") is None and g.label("X", "AVRT") is None  # unmatched = ignore


def test_custom_scheme_via_set_overrides():
    cfg = load_config(overrides=[
        'labels.schemes.tachy.classes={ brady = ["N"], tachy = ["X:*"], other = ["V"] }',
        'labels.schemes.tachy.ignore=["+:*"]',
        'labels.schemes.tachy.unmatched="other"',
        "labels.scheme=tachy",
    ])
    g = LabelGrouping.from_config(cfg)
    assert g.classes == ["brady", "tachy", "other"]
    assert g.class_name("X", "VT") == "tachy" and g.class_name("J", "") == "other"
    assert g.label("+", "(VT") is None


def test_conflicting_patterns_are_config_errors():
    scheme = LabelScheme(classes={"a": ["N", "X:AVRT"], "b": ["X:AVRT"]})
    with pytest.raises(ConfigError, match=r"labels.schemes.s.classes.b: pattern 'X:AVRT' is also listed under 'a'"):
        LabelGrouping(scheme, name="s")
    with pytest.raises(ConfigError, match="ignore: pattern 'N' is also listed"):
        LabelGrouping(LabelScheme(classes={"a": ["N"], "b": ["V"]}, ignore=["N"]), name="s")


def test_bad_label_config_exits_2_with_one_line_per_problem(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["data", "inspect", str(tmp_path), "--set", "labels.scheme=nope"])
    assert res.exit_code == 2
    assert "labels: Value error, scheme 'nope' is not one of" in res.output
    res = runner.invoke(cli, ["data", "inspect", str(tmp_path), "--set", "labels.schemes.aami.unmatched=maybe"])
    assert res.exit_code == 2 and "labels.schemes.aami.unmatched" in res.output
    res = runner.invoke(cli, ["data", "inspect", str(tmp_path), "--set", "labels.schemes.aami.classes.N=[':x']"])
    assert res.exit_code == 2 and "labels.schemes.aami.classes.N: pattern ':x' has no symbol" in res.output
    assert len([ln for ln in res.output.splitlines() if ln.startswith("error:")]) == 1
    res = runner.invoke(cli, ["data", "inspect", str(tmp_path), "--set", "segments.mode=windows"])
    assert res.exit_code == 2 and "segments.mode" in res.output
