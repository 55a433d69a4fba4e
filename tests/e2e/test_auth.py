"""skopeo and podman against a Cargobay that requires credentials, as a team would run it.

The server issues its own tokens (`/token`) to the users of an htpasswd file:
alice may do everything, bob may pull `e2e/**`, carol may pull and push
`e2e/**` but not delete, and anyone may pull `public/*`. The clients log in
(`skopeo login`, `podman login`) or pass `--creds`, then push and pull as users
do; what the rules refuse must fail in the client, and leave nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.checks import SourceImages, assert_serves_image, docker_ref
from tests.e2e.processes import (
    ServerFactory,
    ServerProcess,
    Skopeo,
    SkopeoError,
    require_executable,
)

pytestmark = pytest.mark.e2e

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
RULES = """
[[auth.access]]
repositories = ["**"]
users = ["alice"]
actions = ["pull", "push", "delete", "catalog"]

[[auth.access]]
repositories = ["e2e/**"]
users = ["bob"]
actions = ["pull"]

[[auth.access]]
repositories = ["e2e/**"]
users = ["carol"]
actions = ["pull", "push"]

[[auth.access]]
repositories = ["public/*"]
anonymous = true
actions = ["pull"]
"""
PODMAN_TIMEOUT = 120.0
#: How skopeo and podman report a refusal (401 after a token for less, or 403).
REFUSED = r"(?i)denied|unauthorized"
BAD_LOGIN = r"(?i)invalid username/password|unauthorized"


def creds(user: str, password: str | None = None) -> str:
    return f"{user}:{PASSWORDS[user] if password is None else password}"


@dataclass(frozen=True)
class AuthFiles:
    htpasswd: Path
    signing_key: Path


@pytest.fixture(scope="module")
def auth_files(tmp_path_factory: pytest.TempPathFactory) -> AuthFiles:
    """The htpasswd file and the token signing key, written once for the module."""
    directory = tmp_path_factory.mktemp("auth")
    htpasswd = directory / "htpasswd"
    htpasswd.write_text(
        "".join(
            f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(5)).decode()}\n"
            for user, password in PASSWORDS.items()
        )
    )
    key = ec.generate_private_key(ec.SECP256R1())
    signing_key = directory / "token.key"
    signing_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return AuthFiles(htpasswd, signing_key)


@pytest.fixture
def token_server(cargobay_factory: ServerFactory, auth_files: AuthFiles) -> ServerProcess:
    """Cargobay issuing its own tokens to the htpasswd users."""
    return cargobay_factory(
        extra_config=(
            f'[auth]\nmode = "token"\n'
            f"[auth.htpasswd]\npath = {json.dumps(str(auth_files.htpasswd))}\n"
            f"[auth.token]\nsigning_key = {json.dumps(str(auth_files.signing_key))}\n" + RULES
        )
    )


@pytest.fixture
def basic_server(cargobay_factory: ServerFactory, auth_files: AuthFiles) -> ServerProcess:
    """Cargobay checking Basic credentials on every request."""
    return cargobay_factory(
        extra_config=(
            f'[auth]\nmode = "htpasswd"\n'
            f"[auth.htpasswd]\npath = {json.dumps(str(auth_files.htpasswd))}\n" + RULES
        )
    )


class PodmanError(AssertionError):
    """podman exited with a non-zero status; the message quotes its command and stderr."""


@dataclass
class Podman:
    """The real podman, with its storage, configuration, locks and credentials in `home`.

    Storage is `vfs` under `home` (no overlay mounts), locks are files (not
    `/dev/shm`), and no events are written to the journal. podman refuses a
    run root longer than 50 characters, so that one is `runroot`, a short
    directory the fixture removes.
    """

    executable: str
    home: Path
    runroot: Path

    def __post_init__(self) -> None:
        for sub in ("tmp", "run", "config", "graph"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        (self.home / "containers.conf").write_text(
            "[engine]\n"
            'lock_type = "file"\n'
            'events_logger = "none"\n'
            'cgroup_manager = "cgroupfs"\n'
            f"tmp_dir = {json.dumps(str(self.home / 'run' / 'libpod'))}\n"
        )
        (self.home / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = {json.dumps(str(self.home / "graph"))}\n'
            f"runroot = {json.dumps(str(self.runroot))}\n"
        )
        (self.home / "registries.conf").write_text("unqualified-search-registries = []\n")
        # podman reads the auth file before any login, and fails if there is none.
        (self.home / "auth.json").write_text('{"auths": {}}')
        self.env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.home),
            "TMPDIR": str(self.home / "tmp"),
            "XDG_RUNTIME_DIR": str(self.home / "run"),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "REGISTRY_AUTH_FILE": str(self.home / "auth.json"),
            "CONTAINERS_CONF": str(self.home / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.home / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.home / "registries.conf"),
            "LANG": "C.UTF-8",
        }

    def run(self, *args: str) -> str:
        """Run `podman ARGS`; its stdout, or `PodmanError` quoting stderr if it fails."""
        argv = [
            self.executable,
            "--root", str(self.home / "graph"),
            "--runroot", str(self.runroot),
            "--storage-driver", "vfs",
            *args,
        ]  # fmt: skip
        result = subprocess.run(
            argv,
            env=self.env,
            capture_output=True,
            timeout=PODMAN_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if result.returncode != 0:
            raise PodmanError(
                f"podman {' '.join(args)} exited with {result.returncode}:\n"
                f"{result.stderr.decode(errors='replace')}"
            )
        return result.stdout.decode()

    def login(self, server: ServerProcess, user: str, password: str | None = None) -> None:
        secret = PASSWORDS[user] if password is None else password
        self.run("login", "--tls-verify=false", "-u", user, "-p", secret, server.host)


@pytest.fixture
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    executable = require_executable("podman", "podman (apt-get install podman)")
    with tempfile.TemporaryDirectory(prefix="cb-podman-", dir="/tmp") as runroot:
        yield Podman(executable, tmp_path_factory.mktemp("podman-home"), Path(runroot))


def skopeo_login(
    skopeo: Skopeo, server: ServerProcess, user: str, password: str | None = None
) -> None:
    secret = PASSWORDS[user] if password is None else password
    skopeo.run("login", "--tls-verify=false", "-u", user, "-p", secret, server.host)


def tags(skopeo: Skopeo, server: ServerProcess, repository: str) -> list[str]:
    """The repository's tags, as alice sees them; [] if it does not exist."""
    try:
        out = skopeo.run(
            "list-tags", "--tls-verify=false", "--creds", creds("alice"),
            f"docker://{server.host}/{repository}",
        )  # fmt: skip
    except SkopeoError:
        return []
    return list(json.loads(out)["Tags"])


class TestSkopeoWithTokens:
    def test_logged_in_user_pushes_and_pulls_an_image_byte_identical(
        self, token_server: ServerProcess, skopeo: Skopeo, images: SourceImages, tmp_path: Path
    ) -> None:
        skopeo_login(skopeo, token_server, "alice")
        skopeo.copy(images.oci("app"), docker_ref(token_server, "e2e/app", "1.0"))

        assert_serves_image(skopeo, token_server, "e2e/app", "1.0", images.app, tmp_path)

    def test_login_with_a_wrong_password_fails(
        self, token_server: ServerProcess, skopeo: Skopeo
    ) -> None:
        with pytest.raises(SkopeoError, match=BAD_LOGIN):
            skopeo_login(skopeo, token_server, "alice", "nope")

    def test_user_with_pull_only_pulls_but_cannot_push(
        self, token_server: ServerProcess, skopeo: Skopeo, images: SourceImages, tmp_path: Path
    ) -> None:
        app = docker_ref(token_server, "e2e/app", "1.0")
        skopeo.copy(images.oci("app"), app, "--dest-creds", creds("alice"))

        with pytest.raises(SkopeoError, match=REFUSED):
            skopeo.copy(
                images.oci("tool"),
                docker_ref(token_server, "e2e/tool", "1.0"),
                "--dest-creds",
                creds("bob"),
            )
        assert tags(skopeo, token_server, "e2e/tool") == []
        skopeo.copy(app, f"oci:{tmp_path / 'pulled'}:1.0", "--src-creds", creds("bob"))

    def test_deleting_needs_the_delete_action(
        self, token_server: ServerProcess, skopeo: Skopeo, images: SourceImages
    ) -> None:
        app = docker_ref(token_server, "e2e/app", "1.0")
        skopeo.copy(images.oci("app"), app, "--dest-creds", creds("carol"))

        with pytest.raises(SkopeoError, match=REFUSED):
            skopeo.run("delete", "--tls-verify=false", "--creds", creds("carol"), app)
        assert tags(skopeo, token_server, "e2e/app") == ["1.0"]
        skopeo.run("delete", "--tls-verify=false", "--creds", creds("alice"), app)
        assert tags(skopeo, token_server, "e2e/app") == []

    def test_anonymous_client_pulls_public_images_and_nothing_else(
        self, token_server: ServerProcess, skopeo: Skopeo, images: SourceImages
    ) -> None:
        public = docker_ref(token_server, "public/app", "1.0")
        private = docker_ref(token_server, "e2e/app", "1.0")
        for reference in (public, private):
            skopeo.copy(images.oci("app"), reference, "--dest-creds", creds("alice"))

        assert skopeo.inspect_raw(public) == images.app.manifest
        with pytest.raises(SkopeoError, match=REFUSED):
            skopeo.inspect_raw(private)
        with pytest.raises(SkopeoError, match=REFUSED):
            skopeo.copy(images.oci("tool"), docker_ref(token_server, "public/tool", "1.0"))


class TestSkopeoWithBasicAuth:
    def test_credentials_push_and_pull_and_wrong_ones_fail(
        self, basic_server: ServerProcess, skopeo: Skopeo, images: SourceImages, tmp_path: Path
    ) -> None:
        app = docker_ref(basic_server, "e2e/app", "1.0")
        skopeo.copy(images.oci("app"), app, "--dest-creds", creds("carol"))
        skopeo.copy(app, f"oci:{tmp_path / 'pulled'}:1.0", "--src-creds", creds("bob"))

        with pytest.raises(SkopeoError, match=r"(?i)unauthorized"):
            skopeo.run("inspect", "--raw", "--tls-verify=false", "--creds", creds("bob", "x"), app)
        with pytest.raises(SkopeoError, match=r"(?i)denied"):
            skopeo.copy(
                images.oci("tool"),
                docker_ref(basic_server, "e2e/tool", "1.0"),
                "--dest-creds",
                creds("bob"),
            )

    def test_anonymous_client_pulls_public_images_and_nothing_else(
        self, basic_server: ServerProcess, skopeo: Skopeo, images: SourceImages
    ) -> None:
        public = docker_ref(basic_server, "public/app", "1.0")
        private = docker_ref(basic_server, "e2e/app", "1.0")
        for reference in (public, private):
            skopeo.copy(images.oci("app"), reference, "--dest-creds", creds("alice"))

        assert skopeo.inspect_raw(public) == images.app.manifest
        with pytest.raises(SkopeoError, match=REFUSED):
            skopeo.inspect_raw(private)


class TestPodmanWithTokens:
    def test_podman_logs_in_pulls_and_pushes(
        self,
        token_server: ServerProcess,
        skopeo: Skopeo,
        podman: Podman,
        images: SourceImages,
    ) -> None:
        app = docker_ref(token_server, "e2e/app", "1.0")
        skopeo.copy(images.oci("app"), app, "--dest-creds", creds("alice"))
        source = f"{token_server.host}/e2e/app:1.0"
        copy = f"{token_server.host}/e2e/copy:1.0"

        podman.login(token_server, "carol")
        podman.run("pull", "--quiet", "--tls-verify=false", source)
        podman.run("tag", source, copy)
        podman.run("push", "--quiet", "--tls-verify=false", copy)

        pushed = json.loads(
            skopeo.run(
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds",
                creds("alice"),
                f"docker://{copy}",
            )
        )
        # podman recompresses the layers it pushes; the image config is the same one.
        assert pushed["config"]["digest"] == images.app.blob_digests[0]

    def test_podman_user_with_pull_only_cannot_push(
        self,
        token_server: ServerProcess,
        skopeo: Skopeo,
        podman: Podman,
        images: SourceImages,
    ) -> None:
        app = docker_ref(token_server, "e2e/app", "1.0")
        skopeo.copy(images.oci("app"), app, "--dest-creds", creds("alice"))
        source = f"{token_server.host}/e2e/app:1.0"
        target = f"{token_server.host}/e2e/bobs:1.0"

        podman.login(token_server, "bob")
        podman.run("pull", "--quiet", "--tls-verify=false", source)
        podman.run("tag", source, target)
        with pytest.raises(PodmanError, match=REFUSED):
            podman.run("push", "--quiet", "--tls-verify=false", target)
        assert tags(skopeo, token_server, "e2e/bobs") == []

    def test_podman_login_with_a_wrong_password_fails(
        self, token_server: ServerProcess, podman: Podman
    ) -> None:
        with pytest.raises(PodmanError, match=BAD_LOGIN):
            podman.login(token_server, "alice", "wrong")
