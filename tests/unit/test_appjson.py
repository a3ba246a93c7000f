import pytest

from provisioner.errors import ValidationError
from provisioner.model.appjson import initial_config, parse_app_json


def test_values_secrets_and_existing_vars():
    env = parse_app_json(
        '{"env": {"PLAIN": "x", "WITH_VALUE": {"value": "v"}, "SECRET": {"generator": "secret"},'
        ' "OPTIONAL": {"required": false}, "KEPT": {"value": "new"}}}'
    )
    added = initial_config(env, {"KEPT": "old"}, secret=lambda: "s3cr3t")
    assert added == {"PLAIN": "x", "WITH_VALUE": "v", "SECRET": "s3cr3t"}


def test_required_vars_missing_name_them():
    env = parse_app_json(
        '{"env": {"API_KEY": {"description": "the key"}, "B": {"required": true}}}'
    )
    with pytest.raises(ValidationError, match="requires API_KEY, B"):
        initial_config(env, {})
    assert initial_config(env, {"API_KEY": "1", "B": "2"}) == {}


@pytest.mark.parametrize(
    "text", ["{", '{"env": []}', '{"env": {"1BAD": "x"}}', '{"env": {"A": 3}}']
)
def test_malformed_app_json(text):
    with pytest.raises(ValidationError):
        parse_app_json(text)
