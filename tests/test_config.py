"""Configuration: TOML file, environment overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.cli import main
from registry.config import Config, ConfigError, load_config


class TestLoadConfig:
    def test_no_file_and_no_environment_gives_the_embedded_default(self) -> None:
        config = load_config(environ={})
        assert config == Config()
        assert config.http.addr == "127.0.0.1:5000"
        assert config.storage.driver == "filesystem"
        assert config.storage.filesystem.root == "./data"

    def test_file_values_are_read(self, tmp_path: Path) -> None:
        path = tmp_path / "c.toml"
        path.write_text(
            '[http]\naddr = "0.0.0.0:8080"\n[storage]\ndriver = "s3"\ndelete = false\n'
            '[storage.s3]\nbucket = "b"\npath_style = true\npart_size = 5242880\n'
        )
        config = load_config(path, environ={})
        assert config.http.port == 8080
        assert config.http.host == "0.0.0.0"
        assert config.storage.driver == "s3"
        assert config.storage.delete is False
        assert config.storage.s3.bucket == "b"
        assert config.storage.s3.path_style is True
        assert config.storage.s3.part_size == 5242880

    def test_environment_overrides_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "c.toml"
        path.write_text('[storage.filesystem]\nroot = "/from/file"\n')
        config = load_config(
            path,
            environ={
                "CARGOBAY_STORAGE__FILESYSTEM__ROOT": "/from/env",
                "CARGOBAY_STORAGE__DELETE": "false",
                "CARGOBAY_STORAGE__S3__MAX_CONNECTIONS": "8",
                "UNRELATED": "x",
            },
        )
        assert config.storage.filesystem.root == "/from/env"
        assert config.storage.delete is False
        assert config.storage.s3.max_connections == 8

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ('[http]\nadr = "x"\n', "http.adr"),
            ("[storage]\ndelete = 1\n", "storage.delete"),
            ('[storage]\ndriver = "ftp"\n', "storage.driver"),
            ('[storage.s3]\npart_size = "big"\n', "storage.s3.part_size"),
            ("[bogus]\n", "bogus"),
            ('http = "x"\n', "http"),
        ],
    )
    def test_unknown_keys_and_wrong_types_name_the_key(
        self, tmp_path: Path, text: str, key: str
    ) -> None:
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(path, environ={})

    def test_bad_environment_value_names_the_variable_path(self) -> None:
        with pytest.raises(ConfigError, match=r"storage\.delete"):
            load_config(environ={"CARGOBAY_STORAGE__DELETE": "maybe"})

    def test_invalid_toml_and_missing_file_are_config_errors(self, tmp_path: Path) -> None:
        path = tmp_path / "c.toml"
        path.write_text("[http\n")
        with pytest.raises(ConfigError, match="not valid TOML"):
            load_config(path, environ={})
        with pytest.raises(ConfigError, match="cannot read"):
            load_config(tmp_path / "missing.toml", environ={})

    def test_example_config_is_valid_and_equals_the_defaults(self) -> None:
        example = Path(__file__).parent.parent / "config.example.toml"
        assert load_config(example, environ={}).http == Config().http


class TestCli:
    def test_check_config_rejects_a_bad_file_with_exit_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "c.toml"
        path.write_text("[storage]\ndriver = 3\n")
        assert main(["check-config", "--config", str(path)]) == 2
        assert "storage.driver" in capsys.readouterr().err
