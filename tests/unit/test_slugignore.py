"""`.slugignore`: gitignore-style patterns without negation, as on Heroku."""

from __future__ import annotations

import pytest

from provisioner.build import parse_slugignore, slugignore_matches


def matches(text: str, path: str, is_dir: bool = False) -> bool:
    return slugignore_matches(parse_slugignore(text), path, is_dir)


def test_comments_blanks_and_negations_are_skipped():
    rules = parse_slugignore("# a comment\n\n  \n!keep.txt\n*.psd\r\n")
    assert [r.pattern for r in rules] == ["*.psd"]


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "expected"),
    [
        ("*.psd", "design.psd", False, True),
        ("*.psd", "assets/img/design.psd", False, True),  # no slash: any depth
        ("*.psd", "design.psd.txt", False, False),
        ("README.md", "README.md", False, True),
        ("README.md", "docs/README.md", False, True),
        ("tests/", "tests", True, True),
        ("tests/", "tests", False, False),  # trailing slash: directories only
        ("tests/", "pkg/tests", True, True),
        ("/docs", "docs", True, True),  # leading slash: anchored at the root
        ("/docs", "pkg/docs", True, False),
        ("docs/*.pdf", "docs/a.pdf", False, True),
        ("docs/*.pdf", "docs/sub/a.pdf", False, False),  # `*` does not cross `/`
        ("docs/*.pdf", "other/docs/a.pdf", False, False),  # a slash anchors the pattern
        ("**/fixtures", "a/b/fixtures", True, True),
        ("**/fixtures", "fixtures", True, True),
        ("spec/**", "spec/a/b.rb", False, True),
        ("data?.csv", "data1.csv", False, True),
        ("data?.csv", "data10.csv", False, False),
        ("[ab].txt", "a.txt", False, True),
        ("[!ab].txt", "a.txt", False, False),
        ("[!ab].txt", "c.txt", False, True),
        ("*.log", ".venv/x.log", False, True),
    ],
)
def test_pattern(pattern: str, path: str, is_dir: bool, expected: bool):
    assert matches(pattern, path, is_dir) is expected


def test_any_rule_matches():
    text = "*.psd\nvendor/\n"
    assert matches(text, "vendor", True)
    assert matches(text, "x.psd")
    assert not matches(text, "app.py")


def test_special_characters_are_literal():
    assert matches("a+b.(1).txt", "a+b.(1).txt")
    assert not matches("a.txt", "abtxt")


@pytest.mark.parametrize("bad", ["[z-a]", "assets/[9-0]*.png"])
def test_an_invalid_pattern_is_an_error_naming_the_file_and_line(bad: str):
    from provisioner.build.runner import BuildError

    with pytest.raises(BuildError) as info:
        parse_slugignore(f"*.psd\n# note\n{bad}\n")
    assert info.value.stage == "slugignore"
    assert info.value.message.startswith(f".slugignore line 3: {bad!r} is not a valid pattern (")
