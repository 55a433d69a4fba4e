"""Tag lists, the catalog, the version check and the referrers API."""

from __future__ import annotations

import orjson
from aiohttp.test_utils import TestClient

from tests.api.oci import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, digest_of, error_codes, push_image

SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"


class TestVersionCheck:
    async def test_v2_returns_200_with_api_version_header(self, client: TestClient) -> None:
        response = await client.get("/v2/")
        assert response.status == 200
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        assert orjson.loads(await response.read()) == {}

    async def test_unknown_route_returns_json_error(self, client: TestClient) -> None:
        response = await client.get("/v2/lib/app/nothing/here")
        assert response.status == 404
        assert response.headers["Content-Type"].startswith("application/json")

    async def test_wrong_method_returns_405(self, client: TestClient) -> None:
        response = await client.post("/v2/lib/app/tags/list")
        assert response.status == 405


class TestTagsList:
    async def test_tags_are_sorted(self, client: TestClient) -> None:
        for tag in ["v2", "latest", "v1", "a"]:
            await push_image(client, "lib/app", tag)
        response = await client.get("/v2/lib/app/tags/list")
        assert orjson.loads(await response.read()) == {
            "name": "lib/app",
            "tags": ["a", "latest", "v1", "v2"],
        }

    async def test_pagination_with_n_and_last_and_link_header(self, client: TestClient) -> None:
        for tag in ["t1", "t2", "t3", "t4", "t5"]:
            await push_image(client, "lib/app", tag)
        response = await client.get("/v2/lib/app/tags/list?n=2")
        assert orjson.loads(await response.read())["tags"] == ["t1", "t2"]
        assert response.headers["Link"] == '</v2/lib/app/tags/list?n=2&last=t2>; rel="next"'
        response = await client.get("/v2/lib/app/tags/list?n=2&last=t4")
        assert orjson.loads(await response.read())["tags"] == ["t5"]
        assert "Link" not in response.headers

    async def test_unknown_repository_returns_name_unknown(self, client: TestClient) -> None:
        response = await client.get("/v2/lib/none/tags/list")
        assert response.status == 404
        assert await error_codes(response) == ["NAME_UNKNOWN"]

    async def test_invalid_n_returns_400(self, client: TestClient) -> None:
        await push_image(client, "lib/app", "v1")
        response = await client.get("/v2/lib/app/tags/list?n=-1")
        assert response.status == 400


class TestCatalog:
    async def test_catalog_lists_repositories_sorted_and_paginated(
        self, client: TestClient
    ) -> None:
        for name in ["zeta/app", "alpha", "mid/dle/app"]:
            await push_image(client, name, "v1")
        response = await client.get("/v2/_catalog")
        assert orjson.loads(await response.read()) == {
            "repositories": ["alpha", "mid/dle/app", "zeta/app"]
        }
        response = await client.get("/v2/_catalog?n=1&last=alpha")
        assert orjson.loads(await response.read()) == {"repositories": ["mid/dle/app"]}
        assert response.headers["Link"] == '</v2/_catalog?n=1&last=mid%2Fdle%2Fapp>; rel="next"'


class TestReferrers:
    async def test_referrers_lists_manifests_with_that_subject(self, client: TestClient) -> None:
        image = await push_image(client, "lib/app", "v1")
        subject = {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest)}
        sbom = await push_image(
            client,
            "lib/app",
            None,
            [b"sbom"],
            subject=subject,
            artifact_type=SBOM,
            config_media_type=OCI_EMPTY,
            annotations={"org.example": "yes"},
        )
        response = await client.get(f"/v2/lib/app/referrers/{image.digest}")
        assert response.status == 200
        assert response.headers["Content-Type"] == OCI_INDEX
        body = orjson.loads(await response.read())
        assert body["schemaVersion"] == 2
        assert body["mediaType"] == OCI_INDEX
        assert body["manifests"] == [
            {
                "mediaType": OCI_MANIFEST,
                "digest": sbom.digest,
                "size": len(sbom.manifest),
                "artifactType": SBOM,
                "annotations": {"org.example": "yes"},
            }
        ]

    async def test_put_with_subject_answers_oci_subject(self, client: TestClient) -> None:
        image = await push_image(client, "lib/app", "v1")
        subject = {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest)}
        await push_image(
            client, "lib/app", "sig", [b"sig"], subject=subject, artifact_type=SIGNATURE
        )
        # push_image asserts 201; check the header on a direct PUT of the same body
        manifest = await (await client.get("/v2/lib/app/manifests/sig")).read()
        response = await client.put(
            "/v2/lib/app/manifests/sig2", data=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert response.headers["OCI-Subject"] == image.digest

    async def test_artifact_type_filter_sets_filters_applied(self, client: TestClient) -> None:
        image = await push_image(client, "lib/app", "v1")
        subject = {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest)}
        await push_image(client, "lib/app", None, [b"a"], subject=subject, artifact_type=SBOM)
        await push_image(client, "lib/app", None, [b"b"], subject=subject, artifact_type=SIGNATURE)
        response = await client.get(f"/v2/lib/app/referrers/{image.digest}?artifactType={SBOM}")
        assert response.headers["OCI-Filters-Applied"] == "artifactType"
        manifests = orjson.loads(await response.read())["manifests"]
        assert [m["artifactType"] for m in manifests] == [SBOM]

    async def test_referrers_of_unknown_subject_is_an_empty_index(self, client: TestClient) -> None:
        response = await client.get(f"/v2/lib/app/referrers/{digest_of(b'nothing')}")
        assert response.status == 200
        assert orjson.loads(await response.read())["manifests"] == []

    async def test_referrer_deleted_disappears(self, client: TestClient) -> None:
        image = await push_image(client, "lib/app", "v1")
        subject = {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest)}
        await client.get(f"/v2/lib/app/referrers/{image.digest}")
        sbom = await push_image(
            client, "lib/app", None, [b"s"], subject=subject, artifact_type=SBOM
        )
        assert (await client.delete(f"/v2/lib/app/manifests/{sbom.digest}")).status == 202
        response = await client.get(f"/v2/lib/app/referrers/{image.digest}")
        assert orjson.loads(await response.read())["manifests"] == []

    async def test_malformed_digest_returns_400(self, client: TestClient) -> None:
        response = await client.get("/v2/lib/app/referrers/sha256:bad")
        assert response.status == 400


class TestPaginationInput:
    """Whatever `n` a client sends, the answer is a listing or 400, never a server fault."""

    BAD_COUNTS = [
        "%C2%B2",  # '²': str.isdigit() says yes, int() says no
        "%D9%A3",  # an Arabic-Indic three, which int() would take
        "9" * 5000,  # past Python's integer-string limit
        "-1",
        "1.5",
        "+1",
        " 1",
        "1%0A",
    ]

    async def test_malformed_n_on_the_catalog_returns_pagination_number_invalid(
        self, client: TestClient
    ) -> None:
        for raw in self.BAD_COUNTS:
            response = await client.get(f"/v2/_catalog?n={raw}")
            assert response.status == 400, raw[:20]
            assert await error_codes(response) == ["PAGINATION_NUMBER_INVALID"], raw[:20]

    async def test_malformed_n_on_a_tag_list_returns_pagination_number_invalid(
        self, client: TestClient
    ) -> None:
        await push_image(client, "lib/app", "v1")
        for raw in self.BAD_COUNTS:
            response = await client.get(f"/v2/lib/app/tags/list?n={raw}")
            assert response.status == 400, raw[:20]
            assert await error_codes(response) == ["PAGINATION_NUMBER_INVALID"], raw[:20]

    async def test_large_n_returns_everything(self, client: TestClient) -> None:
        await push_image(client, "lib/app", "v1")
        response = await client.get(f"/v2/lib/app/tags/list?n={'9' * 18}")
        assert response.status == 200
        assert orjson.loads(await response.read())["tags"] == ["v1"]
