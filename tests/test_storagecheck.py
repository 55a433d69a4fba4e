"""`cargobay check-config --connect` and `cargobay serve` say in one sentence why storage
cannot be used, instead of a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.cli import main
from registry.config import S3Config
from tests.e2e.processes import refused_start
from tests.s3server import S3Server


def write_config(path: Path, storage: str) -> Path:
    path.write_text(f'[http]\naddr = "127.0.0.1:1"\n{storage}')
    return path


def s3_storage(config: S3Config) -> str:
    fields = "".join(
        f"{name} = {json.dumps(getattr(config, name))}\n" for name in S3Config.__dataclass_fields__
    )
    return f'[storage]\ndriver = "s3"\n[storage.s3]\n{fields}'


def one_sentence(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


class TestCheckConnect:
    def test_a_usable_directory_is_reported_ok(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        storage = f'[storage.filesystem]\nroot = "{tmp_path / "root"}"\n'
        config = write_config(tmp_path / "c.toml", storage)

        assert main(["check-config", "--config", str(config), "--connect"]) == 0

        assert "storage ok: filesystem" in capsys.readouterr().out
        assert list((tmp_path / "root").rglob("probe")) == []  # the probe file is gone

    def test_an_unusable_directory_is_one_sentence(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "not-a-dir").write_text("a file where the root should be")
        storage = f'[storage.filesystem]\nroot = "{tmp_path / "not-a-dir"}"\n'
        config = write_config(tmp_path / "c.toml", storage)

        assert main(["check-config", "--config", str(config), "--connect"]) == 1

        sentence = one_sentence(capsys.readouterr().err)
        assert sentence.startswith("cargobay: cannot use storage: the directory ")
        assert "not-a-dir" in sentence

    def test_a_missing_bucket_is_named(
        self, tmp_path: Path, moto_s3: S3Server, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = write_config(
            tmp_path / "c.toml", s3_storage(moto_s3.config(bucket="no-such-bucket"))
        )

        assert main(["check-config", "--config", str(config), "--connect"]) == 1

        assert one_sentence(capsys.readouterr().err) == (
            "cargobay: cannot use storage: the bucket 'no-such-bucket' does not exist at "
            f"{moto_s3.endpoint_url}."
        )

    def test_a_usable_bucket_is_reported_ok(
        self, tmp_path: Path, moto_s3: S3Server, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = write_config(tmp_path / "c.toml", s3_storage(moto_s3.config(prefix="check")))

        assert main(["check-config", "--config", str(config), "--connect"]) == 0

        assert "storage ok: s3" in capsys.readouterr().out


class TestServeStartUp:
    @pytest.mark.parametrize("workers", ["1", "2"])
    def test_serve_with_a_missing_bucket_exits_with_the_sentence(
        self, tmp_path: Path, moto_s3: S3Server, workers: str
    ) -> None:
        config = write_config(
            tmp_path / "c.toml", s3_storage(moto_s3.config(bucket="no-such-bucket"))
        )

        assert refused_start(config, workers) == (
            "cargobay: cannot use storage: the bucket 'no-such-bucket' does not exist at "
            f"{moto_s3.endpoint_url}."
        )
