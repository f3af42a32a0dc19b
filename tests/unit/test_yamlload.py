import pytest

from apsis.errors import JobError
from apsis.yamlload import YMap, load_yaml


def test_locations_of_keys_and_values():
    doc = load_yaml("a: 1\nlist:\n  - x\n  - {b: 2}\n", "f.yaml")
    assert isinstance(doc, YMap)
    assert str(doc.key_loc("list")) == "f.yaml:2:1"
    assert str(doc["list"].loc_of(1)) == "f.yaml:4:5"
    assert str(doc["list"][1].loc_of("b")) == "f.yaml:4:9"


def test_scalars_follow_yaml_1_2_core():
    doc = load_yaml('a: 09:30\nb: NO\nc: yes\nd: 2027-12-24\ne: "1"\nf: 1.5\ng: ~\nh: true\n', "f")
    assert doc == {"a": "09:30", "b": "NO", "c": "yes", "d": "2027-12-24", "e": "1",
                   "f": 1.5, "g": None, "h": True}


def test_duplicate_key_is_an_error_at_the_second():
    with pytest.raises(JobError) as exc:
        load_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert str(exc.value.loc) == "f.yaml:3:1"
    assert "duplicate key 'a'" in exc.value.message


def test_syntax_error_is_located():
    with pytest.raises(JobError) as exc:
        load_yaml("a: [1, 2\nb: 3\n", "f.yaml")
    assert exc.value.loc.path == "f.yaml" and exc.value.loc.line >= 1
    assert "YAML syntax error" in exc.value.message


def test_anchors_and_merge_keys():
    doc = load_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n", "f")
    assert doc["other"] == {"x": 1, "y": 3}


def test_null_true_and_false_are_words_in_any_case_and_nothing_like_them_is():
    doc = load_yaml("type: TRUE\ntz: False\nnote: nUlL\nt: tru\nf: falsey\nn: none\n"
                    "q: 'true'\ntrue: 1\n-5: +.INF\nx: 0x1F\n", "f")
    assert doc == {"type": True, "tz": False, "note": None, "t": "tru", "f": "falsey", "n": "none",
                   "q": "true", True: 1, -5: float("inf"), "x": 31}
