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

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
from selenium import webdriver
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

        def delete_link() -> bool:
            browser.get(f"{cargobay.url}/ui/r/e2e/app/-/m/1.0")
            return bool(browser.find_elements(By.ID, "delete-tag"))

        eventually(delete_link, "both workers know e2e/app:1.0")
        browser.find_element(By.ID, "delete-tag").click()
        WebDriverWait(browser, WAIT_SECONDS).until(
            expected_conditions.presence_of_element_located((By.ID, "confirm-delete"))
        )
        assert "keep" in visible_text(browser, "consequences")
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
            + self.RULES
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
