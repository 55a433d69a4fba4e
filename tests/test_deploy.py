"""The deployment examples in deploy/ are valid and say what the README promises."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.app import create_app
from registry.config import Config, load_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def documents(name: str) -> dict[str, dict[str, Any]]:
    """The Kubernetes objects of `deploy/kubernetes/NAME`, by `Kind/name`."""
    with (DEPLOY / "kubernetes" / name).open() as f:
        return {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(f) if d}


class TestKubernetes:
    def test_three_replicas_with_probes_a_service_and_a_disruption_budget(self) -> None:
        objects = documents("cargobay.yaml")
        deployment = objects["Deployment/cargobay"]
        assert deployment["spec"]["replicas"] == 3
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["envFrom"] == [{"secretRef": {"name": "cargobay"}}]
        assert objects["Service/cargobay"]["spec"]["selector"] == {"app": "cargobay"}
        assert objects["PodDisruptionBudget/cargobay"]["spec"]["minAvailable"] == 2

    def test_the_probe_paths_are_routes_the_registry_serves(self) -> None:
        container = documents("cargobay.yaml")["Deployment/cargobay"]["spec"]["template"]["spec"][
            "containers"
        ][0]
        served = {r.canonical for r in create_app(Config()).router.resources()}
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] in served

    def test_the_configmap_is_a_configuration_cargobay_accepts(self, tmp_path: Path) -> None:
        config_file = tmp_path / "config.toml"
        config_file.write_text(
            documents("cargobay.yaml")["ConfigMap/cargobay"]["data"]["config.toml"]
        )
        secret = documents("cargobay.yaml")["Secret/cargobay"]["stringData"]
        config = load_config(config_file, environ=secret)
        assert config.storage.driver == "s3"
        assert config.storage.s3.access_key == secret["CARGOBAY_STORAGE__S3__ACCESS_KEY"]
        assert config.http.workers == 2

    def test_the_demo_minio_creates_the_bucket_the_registry_uses(self) -> None:
        objects = documents("minio.yaml")
        job = objects["Job/minio-create-bucket"]["spec"]["template"]["spec"]["containers"][0]
        assert "minio/registry" in " ".join(job["args"])
        assert objects["Service/minio"]["spec"]["ports"][0]["port"] == 9000


class TestHAProxy:
    def test_the_configuration_is_valid_for_haproxy(self) -> None:
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            pytest.fail("haproxy is not installed (scripts/test installs it)")
        result = subprocess.run(
            [haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
