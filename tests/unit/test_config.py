"""Settings and agency files written to tmp_path: every problem is `file: key: reason`,
secrets are references only, and check_agency names what is missing or malformed."""

from pathlib import Path

import pytest

from adapters import check_agency
from gateway.config.agencies import (
    AgencyConfig,
    WebhookAgency,
    load_agencies,
    load_agency,
)
from gateway.config.settings import load_settings
from gateway.errors import ConfigError
from gateway.signing import generate_ed25519_pair, generate_hmac_secret

SETTINGS = """\
agencies_dir = "agencies"

[gateway]
lender_id = "LENDERX"

[database]
url = "sqlite:///var/gateway.db"

[server]
port = 8099

[secrets]
pii_keys = { file = "keys/pii.keyring" }
evidence_signing_key = { env = "EVIDENCE_KEY" }
"""

AGENCY = """\
id = "AGY_TEST"
name = "Test Recovery 测试"
channel = "webhook"
fields = ["debtor.name", "debtor.phones"]

[endpoint]
url = "https://agency.example/hooks"

[signing]
scheme = "v1"
keys = [{ env = "AGY_TEST_OUTBOUND" }]

[inbound]
scheme = "v1"
keys = [{ file = "keys/agy_test.whsec" }]

[eligibility]
buckets = ["M1", "M2"]

[capacity]
max_open_placements = 10
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return exc.value.problems


def settings_problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path / "gateway.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, base_dir=tmp_path, environ={})
    return problems_of(info)


def agency_problems(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    path = write(tmp_path / "agencies" / "agy_test.toml", text)
    with pytest.raises(ConfigError) as info:
        load_agencies(path.parent)
    return path, problems_of(info)


# Settings


def test_valid_settings_load_with_defaults_for_what_is_not_written(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "gateway.toml", SETTINGS), environ={})
    assert settings.server.port == 8099
    assert settings.server.host == "127.0.0.1"
    assert settings.agencies_path() == Path.cwd() / "agencies"
    assert settings.secrets.evidence_signing_key.env == "EVIDENCE_KEY"


def test_relative_paths_anchor_at_the_base_dir(tmp_path: Path) -> None:
    path = write(tmp_path / "gateway.toml", SETTINGS)
    settings = load_settings(path, base_dir=tmp_path, environ={})
    assert settings.agencies_path() == tmp_path / "agencies"
    assert settings.config_path == path


def test_unknown_settings_key_is_reported_with_file_and_key(tmp_path: Path) -> None:
    problems = settings_problems(tmp_path, SETTINGS.replace("port = 8099", "prot = 8099"))
    path = tmp_path / "gateway.toml"
    assert problems == [
        f"{path}: server.prot: unknown key (check the spelling; see README 'Configuration')"
    ]


def test_unknown_settings_section_is_rejected(tmp_path: Path) -> None:
    problems = settings_problems(tmp_path, SETTINGS + "\n[logging]\nlevel = 'info'\n")
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'gateway.toml'}: logging: unknown key")


def test_every_settings_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = SETTINGS.replace("port = 8099", 'port = "high"\ncolour = 1').replace(
        'lender_id = "LENDERX"', 'lender_id = "x"'
    )
    problems = settings_problems(tmp_path, text)
    keys = sorted(p.split(": ")[1] for p in problems)
    assert keys == ["gateway.lender_id", "server.colour", "server.port"]
    assert all(p.startswith(f"{tmp_path / 'gateway.toml'}: ") for p in problems)


def test_inline_secret_in_settings_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    secret = "k20260101:" + "A" * 43 + "="
    text = SETTINGS.replace('pii_keys = { file = "keys/pii.keyring" }', f'pii_keys = "{secret}"')
    problems = settings_problems(tmp_path, text)
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'gateway.toml'}: secrets.pii_keys: ")
    assert secret not in "\n".join(problems)


def test_secret_ref_needs_exactly_one_of_env_or_file(tmp_path: Path) -> None:
    text = SETTINGS.replace(
        'evidence_signing_key = { env = "EVIDENCE_KEY" }',
        'evidence_signing_key = { env = "EVIDENCE_KEY", file = "keys/evidence.key" }',
    )
    [problem] = settings_problems(tmp_path, text)
    assert "secrets.evidence_signing_key" in problem
    assert "exactly one" in problem


def test_not_toml_names_the_file(tmp_path: Path) -> None:
    [problem] = settings_problems(tmp_path, "[server\nport = 1\n")
    assert problem.startswith(f"{tmp_path / 'gateway.toml'}: not valid TOML")


def test_missing_settings_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found") as info:
        load_settings(tmp_path / "nope.toml", environ={})
    assert str(tmp_path / "nope.toml") in str(info.value)


def test_environment_overrides_database_url_and_listen_address(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path / "gateway.toml", SETTINGS),
        environ={
            "GATEWAY_DATABASE_URL": "postgresql://gw@db/gw",
            "GATEWAY_LISTEN": "0.0.0.0:9000",
        },
    )
    assert settings.database.url == "postgresql://gw@db/gw"
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 9000)


# Agencies


def test_valid_agency_loads_and_remembers_its_file(tmp_path: Path) -> None:
    path = write(tmp_path / "agencies" / "agy_test.toml", AGENCY)
    agencies = load_agencies(path.parent)
    assert list(agencies) == ["AGY_TEST"]
    assert agencies["AGY_TEST"].source == str(path)
    assert agencies["AGY_TEST"].name == "Test Recovery 测试"
    assert agencies["AGY_TEST"].retry.max_attempts == 8


def test_unknown_agency_key_is_reported_with_file_and_key(tmp_path: Path) -> None:
    path, problems = agency_problems(
        tmp_path, AGENCY.replace("max_open_placements = 10", "max_open_placement = 10")
    )
    assert f"{path}: capacity.max_open_placement: unknown key" in "\n".join(problems)
    assert f"{path}: capacity.max_open_placements: Field required" in problems


def test_inline_secret_in_keys_list_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    secret = generate_hmac_secret()
    path, problems = agency_problems(
        tmp_path,
        AGENCY.replace('keys = [{ env = "AGY_TEST_OUTBOUND" }]', f'keys = ["{secret}"]'),
    )
    assert problems[0].startswith(f"{path}: signing.keys.0: ")
    text = "\n".join(problems)
    assert secret.removeprefix("whsec_")[:16] not in text


def test_plain_http_endpoint_is_refused_without_allow_plain_http(tmp_path: Path) -> None:
    text = AGENCY.replace("https://agency.example/hooks", "http://agency.example/hooks")
    path, problems = agency_problems(tmp_path, text)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: endpoint: ")
    assert "https://" in problems[0]
    assert "allow_plain_http" in problems[0]


def test_plain_http_is_accepted_for_a_sandbox_that_says_so(tmp_path: Path) -> None:
    text = AGENCY.replace(
        'url = "https://agency.example/hooks"',
        'url = "http://127.0.0.1:18091/hooks"\nallow_plain_http = true',
    )
    write(tmp_path / "agencies" / "agy_test.toml", text)
    agency = load_agencies(tmp_path / "agencies")["AGY_TEST"]
    assert isinstance(agency, WebhookAgency)
    assert agency.endpoint.allow_plain_http


@pytest.mark.parametrize(
    "host", ["agency.example", "10.1.2.3", "192.168.0.10", "[2001:db8::1]", "127.0.0.1.example"]
)
def test_allow_plain_http_is_refused_for_a_host_off_this_machine(tmp_path: Path, host: str) -> None:
    text = AGENCY.replace(
        'url = "https://agency.example/hooks"',
        f'url = "http://{host}:18091/hooks"\nallow_plain_http = true',
    )
    path, problems = agency_problems(tmp_path, text)
    assert len(problems) == 1 and problems[0].startswith(f"{path}: endpoint: ")
    assert "loopback" in problems[0]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "localhost", "[::1]"])
def test_allow_plain_http_is_accepted_on_loopback(tmp_path: Path, host: str) -> None:
    text = AGENCY.replace(
        'url = "https://agency.example/hooks"',
        f'url = "http://{host}:18091/hooks"\nallow_plain_http = true',
    )
    write(tmp_path / "agencies" / "agy_test.toml", text)
    assert load_agencies(tmp_path / "agencies")["AGY_TEST"].endpoint.allow_plain_http  # type: ignore[union-attr]


def test_duplicate_agency_id_names_both_files(tmp_path: Path) -> None:
    first = write(tmp_path / "agencies" / "a.toml", AGENCY)
    second = write(tmp_path / "agencies" / "b.toml", AGENCY.replace("Test Recovery", "Copy"))
    with pytest.raises(ConfigError) as info:
        load_agencies(tmp_path / "agencies")
    assert problems_of(info) == [f"{second}: id: agency AGY_TEST is already defined in {first}"]


def test_unknown_bucket_is_named(tmp_path: Path) -> None:
    path, problems = agency_problems(
        tmp_path, AGENCY.replace('buckets = ["M1", "M2"]', 'buckets = ["M1", "M7"]')
    )
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: eligibility")
    assert "'M7'" in problems[0]


def test_unknown_allowlist_field_is_named(tmp_path: Path) -> None:
    path, problems = agency_problems(
        tmp_path, AGENCY.replace('"debtor.phones"]', '"debtor.email"]')
    )
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: ")
    assert "fields" in problems[0]
    assert "debtor.email" in problems[0]


def test_problems_in_several_files_are_all_reported(tmp_path: Path) -> None:
    write(tmp_path / "agencies" / "a.toml", AGENCY.replace("channel", "chanel"))
    write(
        tmp_path / "agencies" / "b.toml",
        AGENCY.replace("AGY_TEST", "AGY_B").replace("max_open_placements = 10", ""),
    )
    with pytest.raises(ConfigError) as info:
        load_agencies(tmp_path / "agencies")
    text = "\n".join(problems_of(info))
    assert f"{tmp_path / 'agencies' / 'a.toml'}: chanel: unknown key" in text
    assert f"{tmp_path / 'agencies' / 'b.toml'}: capacity.max_open_placements" in text


def test_empty_agencies_directory_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "agencies").mkdir()
    with pytest.raises(ConfigError, match="no agency files"):
        load_agencies(tmp_path / "agencies")


def test_missing_agencies_directory_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="agencies directory not found"):
        load_agencies(tmp_path / "nowhere")


# check_agency (each channel checks its own keys)


def agency_with_keys(tmp_path: Path, *, scheme: str = "v1") -> AgencyConfig:
    text = AGENCY.replace('scheme = "v1"', f'scheme = "{scheme}"')
    return load_agency(write(tmp_path / "agencies" / "agy_test.toml", text))


def test_check_secrets_passes_when_every_key_is_in_place(tmp_path: Path) -> None:
    agency = agency_with_keys(tmp_path)
    write(tmp_path / "keys" / "agy_test.whsec", generate_hmac_secret() + "\n")
    env = {"AGY_TEST_OUTBOUND": generate_hmac_secret()}
    assert check_agency(agency, tmp_path, env) == []


def test_check_secrets_reports_a_missing_env_var(tmp_path: Path) -> None:
    agency = agency_with_keys(tmp_path)
    write(tmp_path / "keys" / "agy_test.whsec", generate_hmac_secret())
    [problem] = check_agency(agency, tmp_path, {})
    assert problem.startswith(f"{agency.source}: signing.keys[0] (env AGY_TEST_OUTBOUND): ")
    assert "AGY_TEST_OUTBOUND is not set" in problem


def test_check_secrets_reports_a_missing_key_file(tmp_path: Path) -> None:
    agency = agency_with_keys(tmp_path)
    [problem] = check_agency(agency, tmp_path, {"AGY_TEST_OUTBOUND": generate_hmac_secret()})
    assert problem.startswith(f"{agency.source}: inbound.keys[0] (file keys/agy_test.whsec): ")
    assert str(tmp_path / "keys" / "agy_test.whsec") in problem
    assert "keys generate" in problem


def test_check_secrets_reports_a_signature_pasted_instead_of_a_secret(tmp_path: Path) -> None:
    agency = agency_with_keys(tmp_path)
    pasted = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    write(tmp_path / "keys" / "agy_test.whsec", pasted)
    [problem] = check_agency(agency, tmp_path, {"AGY_TEST_OUTBOUND": generate_hmac_secret()})
    assert problem.startswith(f"{agency.source}: inbound.keys[0]")
    assert "whsec_" in problem
    assert "g0hM9SsE" not in problem


def test_check_secrets_reports_the_wrong_key_type_for_the_scheme(tmp_path: Path) -> None:
    agency = agency_with_keys(tmp_path, scheme="v1a")
    private, public = generate_ed25519_pair()
    write(tmp_path / "keys" / "agy_test.whsec", private)  # a private key where a public is due
    problems = check_agency(agency, tmp_path, {"AGY_TEST_OUTBOUND": public})
    assert len(problems) == 2
    assert "signing.keys[0]" in problems[0] and "whsk_" in problems[0]
    assert "inbound.keys[0]" in problems[1] and "whpk_" in problems[1]
    assert all(private.removeprefix("whsk_")[:20] not in p for p in problems)


def test_an_agency_tier_outside_the_configured_tiers_is_named(tmp_path: Path) -> None:
    from gateway.bootstrap import load_config

    settings = write(
        tmp_path / "gateway.toml",
        SETTINGS + '\n[allocation]\ntiers = ["first", "court"]\nlegal_tier = "court"\n',
    )
    agency = write(
        tmp_path / "agencies" / "agy_test.toml",
        AGENCY.replace('channel = "webhook"', 'channel = "webhook"\ntier = "primary"'),
    )
    with pytest.raises(ConfigError) as info:
        load_config(settings, base_dir=tmp_path)
    assert problems_of(info) == [
        f"{agency}: tier: 'primary' is not one of [allocation] tiers ['first', 'court']"
    ]
    write(agency, AGENCY.replace('channel = "webhook"', 'channel = "webhook"\ntier = "court"'))
    _settings, agencies = load_config(settings, base_dir=tmp_path)
    assert agencies["AGY_TEST"].tier == "court"


def test_bucket_rules_with_a_gap_are_named_with_the_first_uncovered_dpd(tmp_path: Path) -> None:
    problems = settings_problems(
        tmp_path,
        SETTINGS
        + """
[[allocation.buckets]]
name = "M1"
max_dpd = 30

[[allocation.buckets]]
name = "M2"
min_dpd = 40
""",
    )
    assert len(problems) == 1
    assert "allocation" in problems[0] and "dpd 31 has no bucket" in problems[0]
