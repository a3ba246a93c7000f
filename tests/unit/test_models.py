import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioner.errors import ValidationError
from provisioner.model.config import (
    MAX_CONFIG_BYTES,
    apply_changes,
    parse_assignment,
    parse_env_file,
    validate_config,
)
from provisioner.model.formation import ProcessFormation, apply_resize, apply_scale
from provisioner.model.names import (
    normalise_domain,
    validate_app_name,
    validate_config_key,
    validate_domain,
)
from provisioner.model.procfile import Procfile, parse_procfile
from provisioner.model.release import Release, parse_version
from provisioner.model.sizes import DYNO_SIZES, dyno_size

# --- app names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["abc", "my-app", "a12", "quiet-river-4821", "a" * 30, "a-b-c", "ab9"]
)
def test_valid_app_names(name):
    assert validate_app_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 31, "1app", "-app", "App", "my_app", "my app", "ünï", "", "app\n"]
    + ["app-", "my--app", "a--", "abc-"],
)
def test_invalid_app_names_name_the_field_and_rule(name):
    with pytest.raises(ValidationError) as info:
        validate_app_name(name)
    assert "app name" in str(info.value)
    assert "lowercase letter" in str(info.value)


# --- custom domains --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, stored",
    [
        ("www.example.com", "www.example.com"),
        ("WWW.Example.COM.", "www.example.com"),  # upper case and the root's dot normalised
        ("a-b.c-d.example.co", "a-b.c-d.example.co"),
        ("123.example.com", "123.example.com"),
        ("shop.xn--p1ai", "shop.xn--p1ai"),
        ("shop.notlocalhost", "shop.notlocalhost"),  # not under `localhost`: another name
        ("a" * 63 + ".example.com", "a" * 63 + ".example.com"),
    ],
)
def test_valid_domains_are_normalised(name, stored):
    assert validate_domain(name, "localhost") == stored


@pytest.mark.parametrize(
    "name, platform, reason",
    [
        ("shop.localhost", "localhost", "is under the platform's domain localhost"),
        ("SHOP.LocalHost.", "localhost", "is under the platform's domain localhost"),
        ("a.b.apps.example.org", "apps.example.org", "under the platform's domain"),
        ("localhost", "localhost", "is the platform's domain localhost"),
        ("apps.example.org", "apps.example.org", "is the platform's domain apps.example.org"),
        ("*.example.com", "localhost", "wildcard domains are not supported"),
        ("*.localhost", "localhost", "wildcard domains are not supported"),
        ("www.*.example.com", "localhost", "wildcard domains are not supported"),
        ("1.2.3.4", "localhost", "is an IP address"),
        ("10.1", "localhost", "is an IP address"),
        ("::1", "localhost", "is an IP address"),
        ("[2001:db8::1]", "localhost", "is an IP address"),
        ("www.example.com\n", "localhost", "no spaces or control characters"),
        ("www.example.com\nfrontend x", "localhost", "no spaces or control characters"),
        ("www.example.com\r", "localhost", "no spaces or control characters"),
        ("www.exa\tmple.com", "localhost", "no spaces or control characters"),
        ("www.example.com\x00", "localhost", "no spaces or control characters"),
        (" www.example.com", "localhost", "no spaces or control characters"),
        ("café.example.com", "localhost", "no spaces or control characters"),
        ("www.example.com:443", "localhost", "must be a hostname"),
        ("www_x.example.com", "localhost", "must be a hostname"),
        ("-www.example.com", "localhost", "must be a hostname"),
        ("www-.example.com", "localhost", "must be a hostname"),
        ("www..example.com", "localhost", "must be a hostname"),
        ("example", "localhost", "must be a hostname"),
        ("www.example.c0m", "localhost", "must be a hostname"),
        ("www.example.com#x", "localhost", "must be a hostname"),
        ("'www.example.com'", "localhost", "must be a hostname"),
        ("a" * 64 + ".example.com", "localhost", "must be a hostname"),
        (("a" * 60 + ".") * 2 + "example.com", "localhost", "at most 128 characters"),
        ("", "localhost", "must be a hostname"),
    ],
)
def test_invalid_domains_say_why(name, platform, reason):
    with pytest.raises(ValidationError) as info:
        validate_domain(name, platform)
    message = str(info.value)
    assert message.startswith(f"domain {name!r}: ") and reason in message
    assert "\n" not in message  # one line, whatever the name holds


def test_normalise_domain():
    assert normalise_domain("WWW.Example.COM.") == "www.example.com"
    assert normalise_domain("*.Example.com") == "*.example.com"


# --- Procfile --------------------------------------------------------------------------------


def test_procfile_basic_with_comments_blank_lines_and_crlf():
    text = "# processes\r\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\r\n\r\nworker:python w.py\r\n"
    procfile = parse_procfile(text)
    assert procfile.processes == {
        "web": "gunicorn app:app --bind 0.0.0.0:$PORT",
        "worker": "python w.py",
    }
    assert procfile.release_command is None


def test_procfile_release_phase_is_not_a_dyno_type():
    procfile = parse_procfile("web: a\nrelease: ./migrate\n")
    assert procfile.release_command == "./migrate"
    assert procfile.dyno_types == {"web": "a"}


def test_procfile_duplicate_names_line_numbers():
    with pytest.raises(ValidationError) as info:
        parse_procfile("web: a\n\n# c\nweb: b\n")
    assert "line 4" in str(info.value) and "line 1" in str(info.value)


def test_procfile_run_is_reserved_for_one_off_dynos():
    with pytest.raises(ValidationError, match="line 2.*reserved for one-off dynos"):
        parse_procfile("web: a\nrun: ./task\n")


@pytest.mark.parametrize("text", ["web a\n", "we b: x\n", ": x\n", "web:\n", "wéb: x\n"])
def test_procfile_malformed_lines_are_rejected(text):
    with pytest.raises(ValidationError) as info:
        parse_procfile(text)
    assert "Procfile line 1" in str(info.value)


process_names = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True).filter(lambda n: n != "run")
commands = (
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
        min_size=1,
        max_size=40,
    )
    .map(str.strip)
    .filter(bool)
)


@given(st.dictionaries(process_names, commands, min_size=0, max_size=6))
def test_procfile_round_trips(processes):
    procfile = Procfile(processes)
    assert parse_procfile(procfile.render()) == procfile


@given(st.text(max_size=200))
def test_procfile_parser_never_crashes_on_any_text(text):
    try:
        parse_procfile(text)
    except ValidationError as exc:
        assert str(exc).startswith("Procfile line ")


# --- config ----------------------------------------------------------------------------------

config_values = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=50
)
config_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)


@given(st.dictionaries(config_keys, config_values, max_size=8))
def test_any_valid_config_is_accepted_unchanged(config):
    assert validate_config(config) == config


@given(config_keys, config_values)
def test_assignment_keeps_equals_quotes_and_newlines(key, value):
    assert parse_assignment(f"{key}={value}") == (key, value)


@pytest.mark.parametrize("key", ["1A", "A-B", "", "A B", "É"])
def test_invalid_config_keys(key):
    with pytest.raises(ValidationError) as info:
        validate_config_key(key)
    assert "POSIX" in str(info.value)


def test_nul_in_value_and_oversize_config_rejected():
    with pytest.raises(ValidationError, match="NUL"):
        validate_config({"A": "x\x00y"})
    with pytest.raises(ValidationError, match="bytes"):
        validate_config({"BIG": "x" * MAX_CONFIG_BYTES})


def test_apply_changes_sets_and_unsets():
    assert apply_changes({"A": "1", "B": "2"}, {"C": "3"}, ["A"]) == {"B": "2", "C": "3"}


def test_env_file_quotes_escapes_and_comments():
    text = '# comment\nexport A=1\nB="two words"\nC=\'single "q"\'\nD="line1\\nline2"\nE=a=b=c\n'
    assert parse_env_file(text) == {
        "A": "1",
        "B": "two words",
        "C": 'single "q"',
        "D": "line1\nline2",
        "E": "a=b=c",
    }
    with pytest.raises(ValidationError, match="line 1"):
        parse_env_file("NOEQUALS\n")


# --- formation, sizes, releases -------------------------------------------------------------


def test_scale_forms():
    formation = {"web": ProcessFormation(1)}
    result = apply_scale(formation, ["web=3", "worker+2", "web-1"], {"web", "worker"})
    assert result == {"web": ProcessFormation(2), "worker": ProcessFormation(2)}
    sized = apply_scale(result, ["web=1:standard-2x"], {"web", "worker"})
    assert sized["web"] == ProcessFormation(1, "standard-2x")


@pytest.mark.parametrize(
    "request_text,match",
    [
        ("web=x", "expected"),
        ("db=1", "not in the Procfile"),
        ("web-5", "between 0"),
        ("web=1:huge", "dyno size"),
    ],
)
def test_scale_errors(request_text, match):
    with pytest.raises(ValidationError, match=match):
        apply_scale({"web": ProcessFormation(1)}, [request_text], {"web"})


def test_resize():
    result = apply_resize({"web": ProcessFormation(2)}, ["web=performance-m"], {"web"})
    assert result["web"] == ProcessFormation(2, "performance-m")


def test_dyno_sizes():
    assert dyno_size("standard-2x").memory_mb == 1024
    assert DYNO_SIZES["performance-m"].memory_mb == 2560
    with pytest.raises(ValidationError):
        dyno_size("nope")


def test_release_round_trip_and_validation():
    release = Release(3, "Deploy abc", "me", "2026-01-01T00:00:00+00:00", slug_sha256="ab")
    assert Release.from_dict(release.to_dict()) == release
    assert release.name == "v3"
    with pytest.raises(ValidationError):
        Release(0, "", "", "")
    with pytest.raises(ValidationError):
        Release(1, "", "", "", status="weird")
    assert parse_version("v12") == 12
    with pytest.raises(ValidationError):
        parse_version("twelve")


def test_release_refuses_untrusted_process_types():
    for types in ({"web.2 x": "sh"}, {"web": ""}, {"": "x"}, {"web": "a\0b"}):
        with pytest.raises(ValidationError, match="process type"):
            Release(1, "Deploy", "me", "now", process_types=types)


def test_formation_refuses_to_store_what_it_could_not_read():
    from provisioner.model.formation import formation_to_dict

    for bad in ({"web.2 x": ProcessFormation(1)}, {"web": ProcessFormation(101)}):
        with pytest.raises(ValidationError):
            formation_to_dict(bad)
