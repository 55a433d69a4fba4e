"""The web page in a real browser (Debian's chromium, driven by selenium) against a live Cargobay.

Images are pushed with skopeo (`copy --all` for the multi-platform one) from
the OCI layout the other end-to-end tests use; the browser then goes where a
user goes: the repository list, a repository, a manifest list and its platform
table, a platform's image and its layers, a tag deleted through the form, and a
login. The delete and login tests run two workers, so a session made by one
process is used on the other. Each page is saved as a screenshot; the
directory is printed (run with `-s` to see it) and kept with pytest's
temporary directories.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.checks import SourceImages, docker_ref, http_get
from tests.e2e.processes import ServerFactory, ServerProcess, Skopeo, require_executable

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_SECONDS = 20
#: Two workers agree within the change feed's interval (1 s); this leaves a margin.
CONVERGE_SECONDS = 10.0


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ui-screenshots")
    print(f"\nweb page screenshots: {directory}")
    return directory


@pytest.fixture
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless chromium with a throw-away profile, quit after the test."""
    binary = require_executable(CHROMIUM, "chromium (Debian package chromium)")
    driver_path = require_executable(CHROMEDRIVER, "chromedriver (Debian package chromium-driver)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = Options()
    options.binary_location = binary
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def visible_text(browser: WebDriver, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def click_link(browser: WebDriver, text: str) -> None:
    """Click the link showing `text` and wait for the next page."""
    link = browser.find_element(By.LINK_TEXT, text)
    old = browser.find_element(By.TAG_NAME, "html")
    link.click()
    WebDriverWait(browser, WAIT_SECONDS).until(expected_conditions.staleness_of(old))


def table_rows(browser: WebDriver, table_id: str) -> list[list[str]]:
    rows = browser.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def eventually(check: Callable[[], bool], what: str) -> None:
    """Return once `check()` is true; fail after `CONVERGE_SECONDS`."""
    deadline = time.monotonic() + CONVERGE_SECONDS
    while not check():
        assert time.monotonic() < deadline, f"never true: {what}"
        time.sleep(0.2)


def shoot(browser: WebDriver, screenshots: Path, name: str) -> None:
    path = screenshots / f"{name}.png"
    assert browser.save_screenshot(str(path)), f"no screenshot saved at {path}"


class TestBrowsing:
    def test_from_the_front_page_to_the_platforms_of_a_multi_platform_image(
        self,
        cargobay: ServerProcess,
        skopeo: Skopeo,
        images: SourceImages,
        browser: WebDriver,
        screenshots: Path,
    ) -> None:
        skopeo.copy(images.oci("multi"), docker_ref(cargobay, "e2e/multi", "latest"), "--all")
        skopeo.copy(images.oci("app"), docker_ref(cargobay, "e2e/app", "1.0"))

        browser.get(cargobay.url + "/")  # a browser asking for / lands on the page
        assert browser.current_url == cargobay.url + "/ui/"
        names = [row[0] for row in table_rows(browser, "repositories")]
        assert names == ["e2e/app", "e2e/multi"]
        shoot(browser, screenshots, "repositories")

        click_link(browser, "e2e/multi")
        [row] = table_rows(browser, "tags")
        assert row[0] == "latest"
        assert row[2] == "index"
        assert row[4] == "linux/amd64, linux/arm64"
        shoot(browser, screenshots, "repository")

        click_link(browser, "latest")
        assert visible_text(browser, "digest") == images.multi.digest
        platforms = table_rows(browser, "platforms")
        assert [(r[0], r[1]) for r in platforms] == [("linux", "amd64"), ("linux", "arm64")]
        shoot(browser, screenshots, "manifest-list")

        arm64 = images.multi.images[1]
        browser.find_elements(By.CSS_SELECTOR, "#platforms a.child")[1].click()
        WebDriverWait(browser, WAIT_SECONDS).until(
            lambda b: b.find_element(By.ID, "digest").text == arm64.digest
        )
        layers = table_rows(browser, "layers")
        assert [row[1] for row in layers] == [layer.digest[:19] for layer in arm64.layers]
        assert "linux/arm64" in visible_text(browser, "config")
        shoot(browser, screenshots, "image")

    def test_deleting_a_tag_through_the_form_removes_it_from_the_api(
        self,
        cargobay_factory: ServerFactory,
        skopeo: Skopeo,
        images: SourceImages,
        browser: WebDriver,
        screenshots: Path,
    ) -> None:
        cargobay = cargobay_factory(workers=2)
        skopeo.copy(images.oci("app"), docker_ref(cargobay, "e2e/app", "1.0"))
        skopeo.copy(images.oci("app"), docker_ref(cargobay, "e2e/app", "keep"))

        def both_tags_everywhere() -> bool:  # each request may reach either worker
            listings = [http_get(cargobay, "/v2/e2e/app/tags/list")[2] for _ in range(6)]
            return all(json.loads(body)["tags"] == ["1.0", "keep"] for body in listings)

        def confirmation_names_keep() -> bool:
            browser.get(f"{cargobay.url}/ui/r/e2e/app/-/m/1.0")
            if not browser.find_elements(By.ID, "delete-tag"):
                return False
            browser.find_element(By.ID, "delete-tag").click()
            WebDriverWait(browser, WAIT_SECONDS).until(
                expected_conditions.presence_of_element_located((By.ID, "confirm-delete"))
            )
            return "keep" in visible_text(browser, "consequences")

        # Six listings can all land on one worker, so the worker that renders the
        # confirmation may learn of `keep` from the feed only later: ask until it names it.
        eventually(both_tags_everywhere, "both workers list e2e/app's two tags")
        eventually(confirmation_names_keep, "the confirmation names e2e/app:keep")
        shoot(browser, screenshots, "delete-confirmation")
        browser.find_element(By.ID, "confirm-delete").click()
        WebDriverWait(browser, WAIT_SECONDS).until(
            expected_conditions.presence_of_element_located((By.ID, "deleted"))
        )
        assert [row[0] for row in table_rows(browser, "tags")] == ["keep"]

        def gone_everywhere() -> bool:  # each request may reach either worker
            return all(http_get(cargobay, "/v2/e2e/app/manifests/1.0")[0] == 404 for _ in range(6))

        eventually(gone_everywhere, "GET /v2/e2e/app/manifests/1.0 answers 404")
        assert http_get(cargobay, "/v2/e2e/app/manifests/keep")[0] == 200


class TestLogin:
    RULES = """
[[auth.access]]
repositories = ["**"]
users = ["alice"]
actions = ["pull", "push", "delete"]

[[auth.access]]
repositories = ["e2e/**"]
users = ["bob"]
actions = ["pull"]
"""

    @pytest.fixture
    def server(self, cargobay_factory: ServerFactory, tmp_path: Path) -> ServerProcess:
        htpasswd = tmp_path / "htpasswd"
        htpasswd.write_text(
            "".join(
                f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(5)).decode()}\n"
                for user, pw in (("alice", "alice-pw"), ("bob", "bob-pw"))
            )
        )
        return cargobay_factory(
            workers=2,
            extra_config=f'[auth]\nmode = "htpasswd"\n[auth.htpasswd]\npath = "{htpasswd}"\n'
            + self.RULES,
        )

    def test_a_user_sees_only_the_repositories_they_may_pull(
        self,
        server: ServerProcess,
        skopeo: Skopeo,
        images: SourceImages,
        browser: WebDriver,
        screenshots: Path,
    ) -> None:
        for name in ("e2e/app", "secret/app"):
            skopeo.copy(
                images.oci("app"), docker_ref(server, name, "1.0"), "--dest-creds=alice:alice-pw"
            )

        def listed(names: list[str]) -> Callable[[], bool]:
            def check() -> bool:
                browser.get(server.url + "/ui/")
                shown = [row[0] for row in table_rows(browser, "repositories")]
                return shown == names

            return check

        browser.get(server.url + "/ui/")
        assert browser.find_elements(By.ID, "repositories") == []
        browser.find_element(By.ID, "login").click()
        browser.find_element(By.ID, "username").send_keys("bob")
        browser.find_element(By.ID, "password").send_keys("bob-pw")
        browser.find_element(By.ID, "login-submit").click()
        WebDriverWait(browser, WAIT_SECONDS).until(
            expected_conditions.presence_of_element_located((By.ID, "user"))
        )
        assert visible_text(browser, "user") == "bob"
        # Logged in on one worker; page after page reaches either, and each knows bob.
        eventually(listed(["e2e/app"]), "bob sees e2e/app, and only it, on both workers")
        for _ in range(6):
            browser.get(server.url + "/ui/")
            assert visible_text(browser, "user") == "bob"
            assert [row[0] for row in table_rows(browser, "repositories")] == ["e2e/app"]
        shoot(browser, screenshots, "logged-in")

        browser.get(server.url + "/ui/r/secret/app")
        assert "no such repository" in visible_text(browser, "error")
        browser.get(server.url + "/ui/r/e2e/app/-/m/1.0")
        assert browser.find_elements(By.ID, "delete-tag") == []


HOSTILE = '<script>alert("label")</script><img src=x onerror=alert(1)>\u202egnp.exe Zoë 🐳'


def push_blob(server: ServerProcess, name: str, data: bytes) -> dict[str, object]:
    """Push `data` in one request; its descriptor as a layer."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    request = urllib.request.Request(
        f"{server.url}/v2/{name}/blobs/uploads/?digest={digest}", data=data, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest,
            "size": len(data)}  # fmt: skip


def push_image(
    server: ServerProcess,
    name: str,
    tag: str,
    config: dict[str, object],
    layers: list[bytes],
    annotations: dict[str, str],
) -> None:
    """Push an OCI image with this config, layers and annotations, as tag `tag`."""
    with ThreadPoolExecutor(8) as pool:
        described = list(pool.map(lambda layer: push_blob(server, name, layer), layers))
    config_descriptor = push_blob(server, name, json.dumps(config).encode())
    config_descriptor["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_descriptor,
        "layers": described,
        "annotations": annotations,
    }
    request = urllib.request.Request(
        f"{server.url}/v2/{name}/manifests/{tag}",
        data=json.dumps(manifest, separators=(",", ":")).encode(),
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201


def no_alert(browser: WebDriver) -> bool:
    try:
        browser.switch_to.alert  # noqa: B018 (raises when there is none)
    except NoAlertPresentException:
        return True
    return False


class TestHostileContent:
    def test_hostile_labels_env_history_and_annotations_run_nothing(
        self, cargobay: ServerProcess, browser: WebDriver, screenshots: Path
    ) -> None:
        config = {
            "os": "linux",
            "architecture": "amd64",
            "author": HOSTILE,
            "config": {"Env": [f"EVIL={HOSTILE}"], "Labels": {HOSTILE: HOSTILE}, "Cmd": [HOSTILE]},
            "history": [{"created_by": HOSTILE}],
        }
        push_image(cargobay, "e2e/evil", "v1", config, [b"one"], {HOSTILE: HOSTILE})

        browser.get(f"{cargobay.url}/ui/r/e2e/evil/-/m/v1")
        assert no_alert(browser)
        scripts = browser.execute_script("return document.scripts.length")
        assert scripts == 1  # ui.js, and nothing the manifest brought
        assert browser.execute_script("return document.images.length") == 0
        labels = visible_text(browser, "labels")
        assert '<script>alert("label")</script>' in labels
        assert "\\u202egnp.exe" in labels and "Zoë 🐳" in labels
        shoot(browser, screenshots, "hostile")

    def test_a_4_mib_manifest_and_a_2000_layer_image_load_as_short_pages(
        self, cargobay: ServerProcess, browser: WebDriver, screenshots: Path
    ) -> None:
        annotations = {f"key.{i:06d}": "v" * 100 for i in range(34_000)}  # 3.9 MiB of JSON
        push_image(cargobay, "e2e/big", "v1", {"os": "linux"}, [b"x"], annotations)
        layers = [f"layer {i}".encode() for i in range(2000)]
        history = [{"created_by": f"RUN step {i}"} for i in range(2000)]
        config = {"os": "linux", "architecture": "amd64", "history": history}
        push_image(cargobay, "e2e/deep", "v1", config, layers, {})

        # Both load within the page-load timeout and keep the DOM small.
        browser.get(f"{cargobay.url}/ui/r/e2e/big/-/m/v1")
        assert len(table_rows_of(browser, "annotations")) == 200
        assert browser.execute_script("return document.getElementsByTagName('*').length") < 5000
        browser.get(f"{cargobay.url}/ui/r/e2e/deep/-/m/v1")
        assert len(table_rows(browser, "layers")) == 100
        browser.find_element(By.CSS_SELECTOR, "a.next").click()
        WebDriverWait(browser, WAIT_SECONDS).until(lambda b: "page=1" in b.current_url)
        assert table_rows(browser, "layers")[0][0] == "101"
        shoot(browser, screenshots, "deep-image")


def table_rows_of(browser: WebDriver, table_id: str) -> list[object]:
    return browser.find_elements(By.CSS_SELECTOR, f"#{table_id} tr")
