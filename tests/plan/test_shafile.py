"""sha_number.yml: both forms parse, nothing is coerced, bad content is refused."""
import pytest

from ecom_infra import shafile
from ecom_infra.errors import ConfigError

APPS = ["ecom-platform", "ecom-docs"]
A, B = "0" * 40, "1234567890" * 4


def test_current_form():
    text = f"staging:\n  ecom-platform: {A}\n  ecom-docs: {B}\nproduction:\n  ecom-platform: {B}\n"
    assert shafile.parse(text, APPS) == {"staging": {"ecom-platform": A, "ecom-docs": B},
                                         "production": {"ecom-platform": B}}


def test_flat_legacy_form_means_first_app():
    assert shafile.parse(f"staging: {B}\nproduction: {A}\n", APPS) == {
        "staging": {"ecom-platform": B}, "production": {"ecom-platform": A}}


def test_digit_only_and_exponent_like_shas_stay_strings():
    odd = "1e" + "1" * 38            # YAML 1.1 would read 1e111... as a float
    parsed = shafile.parse(f"staging:\n  ecom-platform: {B}\n  ecom-docs: {odd}\n", APPS)
    assert parsed["staging"] == {"ecom-platform": B, "ecom-docs": odd}


def test_uppercase_is_normalised():
    assert shafile.parse(f"staging: {'AB' * 20}\n", APPS) == {"staging": {"ecom-platform": "ab" * 20}}


def test_empty_file_is_no_entries():
    assert shafile.parse("", APPS) == {}
    assert shafile.parse("# nothing yet\n", APPS) == {}


@pytest.mark.parametrize("text,problem", [
    ("staging: [unclosed\n", "is not valid YAML"),
    ("- staging\n", "must be a mapping"),
    (f"staging:\n  ecom-platform: {'a' * 39}\n", "39 characters"),
    (f"staging:\n  ecom-platform: {'g' * 40}\n", "40-character hex"),
    (f"staging:\n  ecom-shop: {A}\n", "unknown app"),
    (f"Staging: {A}\n", "not a valid environment name"),
    ("staging:\n  ecom-platform: [1, 2]\n", "40-character hex"),
])
def test_malformed_content_is_one_line_error(text, problem):
    with pytest.raises(ConfigError) as info:
        shafile.parse(text, APPS, source="s3://b/sha_number.yml")
    assert problem in str(info.value)
    assert str(info.value).startswith("s3://b/sha_number.yml")
    assert "\n" not in str(info.value)


def test_dump_round_trips_and_quotes():
    data = {"staging": {"ecom-docs": B, "ecom-platform": A}, "production": {"ecom-platform": B}}
    text = shafile.dump(data)
    assert f'ecom-docs: "{B}"' in text
    assert shafile.parse(text, APPS) == data
    assert text.index("production:") < text.index("staging:")      # sorted, stable
