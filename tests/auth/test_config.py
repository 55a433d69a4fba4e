"""The `[auth]`, `[limits]`, `[http.tls]` and read-only configuration, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.cli import main
from registry.config import AccessRule, Config, ConfigError, GroupConfig, load_config

FULL = """
[http]
addr = "0.0.0.0:5000"
trusted_proxies = ["10.0.0.0/8", "192.0.2.1"]

[http.tls]
cert = "/etc/cargobay/cert.pem"
key = "/etc/cargobay/key.pem"

[storage]
read_only = true

[auth]
mode = "token"

[auth.htpasswd]
path = "/etc/cargobay/htpasswd"

[auth.token]
service = "registry.example.com"
issuer = "cargobay"
signing_key = "/etc/cargobay/token.key"

[[auth.groups]]
name = "developers"
members = ["alice", "bob"]

[[auth.access]]
repositories = ["team/**"]
groups = ["developers"]
actions = ["pull", "push"]

[[auth.access]]
repositories = ["public/*"]
anonymous = true
actions = ["pull"]

[limits]
max_manifest_bytes = 1048576
max_blob_bytes = 10737418240
upload_expiry_seconds = 86400
rate_limit_per_second = 20.5
rate_limit_burst = 200
body_idle_timeout_seconds = 30.0
max_concurrent_uploads = 100
max_concurrent_uploads_per_client = 10
"""


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(path, environ=environ or {})


class TestSecurityConfig:
    def test_every_new_section_is_read(self, tmp_path: Path) -> None:
        config = load(tmp_path, FULL)
        assert config.http.trusted_proxies == ("10.0.0.0/8", "192.0.2.1")
        assert config.http.tls.enabled
        assert config.storage.read_only
        assert config.auth.mode == "token"
        assert config.auth.groups == (GroupConfig("developers", ("alice", "bob")),)
        assert config.auth.access == (
            AccessRule(repositories=("team/**",), groups=("developers",), actions=("pull", "push")),
            AccessRule(repositories=("public/*",), anonymous=True, actions=("pull",)),
        )
        assert config.limits.max_blob_bytes == 10737418240
        assert config.limits.rate_limit_per_second == 20.5
        assert config.limits.body_idle_timeout_seconds == 30.0
        assert config.limits.max_concurrent_uploads == 100
        assert config.limits.max_concurrent_uploads_per_client == 10

    def test_defaults_keep_the_registry_open_on_loopback(self) -> None:
        config = Config()
        assert config.auth.mode == "none"
        assert config.http.addr.startswith("127.0.0.1:")
        assert not config.storage.read_only
        assert not config.http.tls.enabled

    def test_example_config_documents_valid_values(self) -> None:
        example = Path(__file__).parents[2] / "config.example.toml"
        assert load_config(example, environ={}) == Config()

    def test_environment_sets_lists_and_new_keys(self, tmp_path: Path) -> None:
        config = load(
            tmp_path,
            "",
            {
                "CARGOBAY_STORAGE__READ_ONLY": "true",
                "CARGOBAY_HTTP__TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2",
                "CARGOBAY_LIMITS__RATE_LIMIT_PER_SECOND": "5",
            },
        )
        assert config.storage.read_only
        assert config.http.trusted_proxies == ("10.0.0.1", "10.0.0.2")
        assert config.limits.rate_limit_per_second == 5.0

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            (
                '[auth]\nmode = "htpasswd"\n[auth.htpasswd]\npath = "p"\n'
                '[[auth.access]]\nrepos = ["x"]\nusers = ["a"]\nactions = ["pull"]\n',
                r"unknown configuration key 'auth\.access\[0\]\.repos'",
            ),
            (
                '[auth]\nmode = "htpasswd"\n[auth.htpasswd]\npath = "p"\n'
                '[[auth.access]]\nrepositories = ["x"]\nusers = ["a"]\nactions = ["pul"]\n',
                r"auth\.access\[0\]\.actions\[0\]: 'pul' is not one of",
            ),
            (
                '[auth]\nmode = "htpasswd"\n[auth.htpasswd]\npath = "p"\n'
                '[[auth.access]]\nrepositories = ["x"]\nanonymous = true\nactions = ["push"]\n',
                r"auth\.access\[0\]: actions: anonymous rules may only grant pull",
            ),
            (
                '[auth]\nmode = "htpasswd"\n[auth.htpasswd]\npath = "p"\n'
                '[[auth.access]]\nrepositories = ["x"]\nactions = ["pull"]\n',
                r"auth\.access\[0\]: a rule needs users",
            ),
            (
                '[auth]\nmode = "htpasswd"\n[auth.htpasswd]\npath = "p"\n'
                '[[auth.access]]\nrepositories = ["x"]\ngroups = ["nobody"]\nactions = ["pull"]\n',
                r"auth: access: unknown group 'nobody'",
            ),
            (
                '[[auth.access]]\nrepositories = ["x"]\nusers = ["a"]\nactions = ["pull"]\n',
                r"auth: access rules have no effect with mode = 'none'",
            ),
            ('[auth]\nmode = "htpasswd"\n', r"auth: htpasswd\.path is required"),
            ('[auth]\nmode = "token"\n', r"auth: token: public_keys, jwks or signing_key"),
            (
                '[auth]\nmode = "token"\n[auth.token]\npublic_keys = ["k.pem"]\n',
                r"auth: token\.realm is required",
            ),
            (
                '[auth]\nmode = "token"\n[auth.token]\nsigning_key = "k.pem"\n',
                r"htpasswd\.path is required to issue tokens",
            ),
            ('[auth]\nmode = "ldap"\n', r"auth\.mode"),
            ('[http.tls]\ncert = "c.pem"\n', r"http\.tls: cert and key must be set together"),
            ('[http]\ntrusted_proxies = ["not-an-ip"]\n', r"http: trusted_proxies"),
            ("[limits]\nmax_blob_bytes = -1\n", r"limits: max_blob_bytes"),
            ("[limits]\nrate_limit_burst = 0\n", r"limits: rate_limit_per_second"),
            ("[limits]\nmax_header_bytes = 10\n", r"limits: max_header_bytes"),
            ("[limits]\nbody_idle_timeout_seconds = -1\n", r"limits: body_idle_timeout"),
            ("[limits]\nmax_concurrent_uploads = -1\n", r"limits: body_idle_timeout"),
            ('[http]\ntrusted_proxies = "10.0.0.1"\n', r"http\.trusted_proxies: expected a list"),
        ],
    )
    def test_mistakes_are_errors_that_name_the_key(
        self, tmp_path: Path, text: str, message: str
    ) -> None:
        with pytest.raises(ConfigError, match=message):
            load(tmp_path, text)

    def test_list_of_tables_cannot_come_from_the_environment(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"auth\.access: a list of tables"):
            load(tmp_path, "", {"CARGOBAY_AUTH__ACCESS": "x"})

    def test_printed_config_hides_the_s3_secret(self, tmp_path: Path) -> None:
        config = load(tmp_path, '[storage.s3]\nsecret_key = "very-secret"\n')
        assert "very-secret" not in repr(config)


class TestServe:
    def test_unreadable_htpasswd_file_stops_the_start_with_exit_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "c.toml"
        path.write_text(
            f'[auth]\nmode = "htpasswd"\n[auth.htpasswd]\npath = "{tmp_path / "missing"}"\n'
        )
        assert main(["serve", "--config", str(path)]) == 2
        assert "cannot read htpasswd file" in capsys.readouterr().err
