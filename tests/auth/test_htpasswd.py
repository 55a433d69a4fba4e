"""The htpasswd file: bcrypt entries only, checked off the event loop, re-read when it changes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import bcrypt
import pytest

from registry.auth.htpasswd import Htpasswd
from registry.config import ConfigError
from tests.auth.conftest import write_htpasswd


def _bump_mtime(path: Path) -> None:
    """Make a rewrite visible even on filesystems with coarse timestamps."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))


class TestHtpasswd:
    async def test_right_password_passes_and_wrong_one_fails(self, tmp_path: Path) -> None:
        path = tmp_path / "htpasswd"
        write_htpasswd(path, {"alice": "s3cret"})
        users = Htpasswd(str(path))
        assert await users.check("alice", "s3cret")
        assert await users.check("alice", "s3cret")  # remembered
        assert not await users.check("alice", "S3cret")
        assert not await users.check("nobody", "s3cret")

    async def test_y_prefixed_entries_written_by_apache_htpasswd_are_accepted(
        self, tmp_path: Path
    ) -> None:
        hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)
        path = tmp_path / "htpasswd"
        path.write_text(f"alice:{hashed}\n")
        assert await Htpasswd(str(path)).check("alice", "pw")

    async def test_passwords_past_72_bytes_are_checked_as_bcrypt_hashed_them(
        self, tmp_path: Path
    ) -> None:
        long = "x" * 100
        path = tmp_path / "htpasswd"
        write_htpasswd(path, {"alice": long[:72]})
        assert await Htpasswd(str(path)).check("alice", long)

    async def test_other_hash_kinds_and_junk_lines_are_ignored_with_a_warning(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = tmp_path / "htpasswd"
        write_htpasswd(path, {"alice": "pw"})
        with path.open("a") as f:
            f.write(
                "# a comment\n\nmd5user:$apr1$abc$defghijk\nsha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"
            )
            f.write("no-colon-here\n")
        with caplog.at_level(logging.WARNING):
            users = Htpasswd(str(path))
        assert await users.check("alice", "pw")
        assert not await users.check("md5user", "x")
        assert "'md5user' is not a bcrypt entry" in caplog.text
        assert "$apr1$" not in caplog.text
        assert "not a user:hash line" in caplog.text

    async def test_changes_to_the_file_take_effect_without_a_restart(self, tmp_path: Path) -> None:
        path = tmp_path / "htpasswd"
        write_htpasswd(path, {"alice": "old"})
        users = Htpasswd(str(path))
        assert await users.check("alice", "old")

        write_htpasswd(path, {"alice": "new", "bob": "pw"})
        _bump_mtime(path)
        assert not await users.check("alice", "old")
        assert await users.check("alice", "new")
        assert await users.check("bob", "pw")

    async def test_a_removed_file_locks_everyone_out_until_it_is_back(self, tmp_path: Path) -> None:
        path = tmp_path / "htpasswd"
        write_htpasswd(path, {"alice": "pw"})
        users = Htpasswd(str(path))
        path.unlink()
        assert not await users.check("alice", "pw")
        write_htpasswd(path, {"alice": "pw"})
        assert await users.check("alice", "pw")

    def test_missing_file_at_start_is_a_config_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="cannot read htpasswd"):
            Htpasswd(str(tmp_path / "missing"))
