"""Buildpacks as apps name them: URL parsing, refusals, masking, cache identities, list edits."""

from __future__ import annotations

import pytest

from provisioner.aws.blobs import buildpack_key, buildpack_pointer_key
from provisioner.errors import ValidationError
from provisioner.plan.buildpacks import (
    EITHER,
    GIT,
    TARBALL,
    Resolved,
    label,
    mask,
    normalise,
    parse_url,
    pick_ref,
    source_digest,
    with_added,
    with_set,
    without,
)

COMMIT = "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c"


@pytest.mark.parametrize(
    ("text", "url", "ref", "kind"),
    [
        ("https://github.com/heroku/heroku-buildpack-python", "https://github.com/heroku/heroku-buildpack-python", "", EITHER),
        ("https://github.com/heroku/heroku-buildpack-python.git#v270", "https://github.com/heroku/heroku-buildpack-python.git", "v270", GIT),
        ("https://github.com/o/r#feature/x", "https://github.com/o/r", "feature/x", GIT),
        (f"https://example.com/bp.git#{COMMIT}", "https://example.com/bp.git", COMMIT, GIT),
        ("https://buildpack-registry.s3.amazonaws.com/buildpacks/heroku/python.tgz", "https://buildpack-registry.s3.amazonaws.com/buildpacks/heroku/python.tgz", "", TARBALL),
        ("http://198.18.0.1:8080/bp.tar.gz", "http://198.18.0.1:8080/bp.tar.gz", "", TARBALL),
        ("https://u:tok@git.example.com/bp.git#main", "https://git.example.com/bp.git", "main", GIT),
    ],
)  # fmt: skip
def test_buildpack_urls_are_taken_apart(text: str, url: str, ref: str, kind: str) -> None:
    parsed = parse_url(text)
    assert (parsed.url, parsed.ref, parsed.kind) == (url, ref, kind)
    assert parsed.is_commit == (ref == COMMIT)


def test_credentials_are_kept_apart_and_masked() -> None:
    assert parse_url("https://u:t%40k@h.example/bp.git").userinfo == "u:t%40k"
    assert mask("https://u:tok@h.example/bp.git#main") == "https://***@h.example/bp.git#main"
    assert mask("fatal: 'https://tok@h/x' not found") == "fatal: 'https://***@h/x' not found"
    assert mask("https://s3.example/bp.tgz?X-Amz-Signature=abc&b=1") == (
        "https://s3.example/bp.tgz?X-Amz-Signature=***&b=***"
    )
    assert mask("/home/me/bp") == "/home/me/bp"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("https://example.com/bp.tgz#main", "a tarball URL takes no #ref"),
        ("https://example.com/bp#--upload-pack=x", "must be a branch, a tag or a full commit id"),
        ("https://example.com/bp#a..b", "must be a branch, a tag or a full commit id"),
        ("https://exa mple.com/bp", "must be one line without spaces"),
        ("https://example.com/bp\nx", "must be one line without spaces"),
        ("https:///bp", "must be http(s)://host/path"),
        ('https://example.com/b"p', "must be http(s)://host/path"),
        ("git@github.com:x/y.git", "SSH URLs are not supported"),
        ("heroku/python", "is neither a URL nor a directory here"),
        ("file:///etc", "is neither a URL nor a directory on this machine"),
        ("./no-such-dir", "is neither a URL nor a directory on this machine"),
        ("/srv/../etc", "is neither a URL nor a directory on this machine"),
    ],
)
def test_malformed_buildpacks_are_refused_in_one_line(text: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        normalise(text, local_dir=False)
    assert words in info.value.message and "\n" not in info.value.message
    assert info.value.hint


def test_a_registry_name_gets_its_tarball_url_as_the_hint() -> None:
    with pytest.raises(ValidationError) as info:
        normalise("heroku/python", local_dir=False)
    assert info.value.hint == (
        "for Heroku's registry use its tarball URL: "
        "https://buildpack-registry.s3.amazonaws.com/buildpacks/heroku/python.tgz"
    )


def test_absolute_paths_name_directories_on_the_build_hosts() -> None:
    assert normalise("/srv/dynoform/build/buildpacks/python", local_dir=False) == (
        "/srv/dynoform/build/buildpacks/python"
    )


def test_cache_keys_are_per_app_and_per_url_and_commit() -> None:
    sha = "ab" * 32
    assert buildpack_key("0a1b2c3d4e5f", sha) == f"buildpacks/0a1b2c3d4e5f/{sha}.tgz"
    digest = source_digest(GIT, "https://h/bp.git", COMMIT)
    assert buildpack_pointer_key("0a1b2c3d4e5f", digest) == (
        f"buildpacks/0a1b2c3d4e5f/fetched/{digest}.json"
    )
    assert digest != source_digest(GIT, "https://h/bp.git", "0" * 40)  # a moved branch
    assert source_digest(TARBALL, "https://h/bp.tgz") != source_digest(TARBALL, "https://h/b.tgz")
    # Credentials are not part of the URL that names it: a rotated token fetches nothing again.
    assert parse_url("https://u:t@h/bp.tgz").url == parse_url("https://h/bp.tgz").url


LS_REMOTE = f"""{COMMIT}\tHEAD
{"1" * 40}\trefs/heads/main
{"2" * 40}\trefs/heads/feature/main
{"3" * 40}\trefs/tags/v1
{"4" * 40}\trefs/tags/v1^{{}}
{"5" * 40}\trefs/tags/main
"""


@pytest.mark.parametrize(
    ("ref", "found"),
    [
        ("", (COMMIT, "HEAD")),
        ("main", ("1" * 40, "refs/heads/main")),  # the branch before a tag of that name
        ("feature/main", ("2" * 40, "refs/heads/feature/main")),
        ("v1", ("4" * 40, "refs/tags/v1")),  # an annotated tag's commit
        ("refs/tags/main", ("5" * 40, "refs/tags/main")),
        ("nope", None),
    ],
)
def test_refs_resolve_to_commits(ref: str, found: tuple[str, str] | None) -> None:
    assert pick_ref(LS_REMOTE, ref) == found


def test_labels_name_the_buildpacks_directory() -> None:
    assert label("https://github.com/heroku/heroku-buildpack-python.git#v1") == (
        "heroku-buildpack-python"
    )
    assert label("https://x.example/buildpacks/heroku/python.tgz") == "python"
    assert label("/home/me/my pack/") == "my-pack"
    assert label("https://x.example/") == "buildpack"


def test_resolved_buildpacks_as_build_records_and_apps_info_show_them() -> None:
    git = Resolved("https://u:t@h/bp.git#main", GIT, "k", "ab" * 32, COMMIT)
    assert git.to_dict() == {
        "buildpack": "https://***@h/bp.git#main", "kind": "git", "commit": COMMIT,
        "sha256": "ab" * 32,
    }  # fmt: skip
    assert git.describe() == "commit 3f2a1b4c5d6e"
    assert Resolved("/home/me/bp", "dir", "k", "cd" * 32).describe() == "sha256 cdcdcdcdcdcd"


def test_add_set_and_remove_as_heroku() -> None:
    packs = ("a", "b")
    assert with_added(packs, "c", None) == ("a", "b", "c")
    assert with_added(packs, "c", 1) == ("c", "a", "b")
    assert with_added(packs, "c", 2) == ("a", "c", "b")
    assert with_added(packs, "c", 9) == ("a", "b", "c")
    assert with_set((), "c", None) == ("c",)
    assert with_set(packs, "c", None) == ("c", "b")
    assert with_set(packs, "c", 2) == ("a", "c")
    assert with_set(packs, "c", 5) == ("a", "b", "c")
    assert without(packs, "a", None) == ("b",)
    assert without(packs, None, 2) == ("a",)
    assert without(("https://u:t@h/x.tgz",), "https://***@h/x.tgz", None) == ()


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda: with_added(("a",), "a", None), "is already set on the app"),
        (lambda: with_set(("a",), "a", 1), "is already set on the app"),
        (lambda: with_added(("a",), "b", 0), "must be 1 or more"),
        (lambda: without(("a",), None, 2), "the app has 1 buildpack(s)"),
        (lambda: without(("a",), "z", None), "is not set on the app"),
        (lambda: without(("a",), "a", 1), "not both"),
    ],
)
def test_list_edits_refuse_in_one_line(edit, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        edit()
    assert words in info.value.message
