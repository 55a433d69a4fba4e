"""Manifest push, pull, delete: every format, references checked, errors to the spec."""

from __future__ import annotations

import orjson
from aiohttp.test_utils import TestClient

from registry.config import Config, StorageConfig
from tests.api.conftest import ClientFactory
from tests.api.oci import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    digest_of,
    error_codes,
    push_blob,
    push_image,
    put_manifest,
)
from tests.manifest import samples
from tests.manifest.samples import (
    BUILDKIT_CACHE_CONFIG,
    DOCKER_CONFIG,
    DOCKER_LAYER,
)
from tests.manifest.samples import DOCKER_MANIFEST_LIST as DOCKER_LIST
from tests.manifest.samples import DOCKER_SCHEMA2 as DOCKER_V2


class TestPutAndGet:
    async def test_put_by_tag_returns_201_and_get_returns_exact_bytes(
        self, client: TestClient
    ) -> None:
        image = await push_image(client, "lib/app", "v1")
        response = await client.get("/v2/lib/app/manifests/v1")
        assert response.status == 200
        assert await response.read() == image.manifest
        assert response.headers["Content-Type"] == OCI_MANIFEST
        assert response.headers["Docker-Content-Digest"] == digest_of(image.manifest)

    async def test_put_returns_location_and_digest(self, client: TestClient) -> None:
        config = await push_blob(client, "lib/app", b"{}")
        body = orjson.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
                "layers": [],
            }
        )
        response = await client.put(
            "/v2/lib/app/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST}
        )
        assert response.status == 201
        assert response.headers["Docker-Content-Digest"] == digest_of(body)
        assert response.headers["Location"] == f"/v2/lib/app/manifests/{digest_of(body)}"

    async def test_get_by_digest_and_head_by_tag(self, client: TestClient) -> None:
        image = await push_image(client, "lib/app", "v1")
        by_digest = await client.get(f"/v2/lib/app/manifests/{image.digest}")
        assert await by_digest.read() == image.manifest
        head = await client.head("/v2/lib/app/manifests/v1")
        assert head.status == 200
        assert head.headers["Content-Length"] == str(len(image.manifest))
        assert head.headers["Docker-Content-Digest"] == image.digest
        assert head.headers["Content-Type"] == OCI_MANIFEST

    async def test_put_by_digest_without_tag(self, client: TestClient) -> None:
        image = await push_image(client, "lib/app", None)
        response = await client.get(f"/v2/lib/app/manifests/{image.digest}")
        assert response.status == 200

    async def test_put_by_wrong_digest_returns_digest_invalid(self, client: TestClient) -> None:
        image = await push_image(client, "lib/app", "v1")
        wrong = digest_of(b"other")
        response = await client.put(
            f"/v2/lib/app/manifests/{wrong}",
            data=image.manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert response.status == 400
        assert await error_codes(response) == ["DIGEST_INVALID"]

    async def test_retagging_moves_the_tag(self, client: TestClient) -> None:
        await push_image(client, "lib/app", "latest", [b"one"])
        second = await push_image(client, "lib/app", "latest", [b"two"])
        response = await client.head("/v2/lib/app/manifests/latest")
        assert response.headers["Docker-Content-Digest"] == second.digest

    async def test_docker_schema2_and_manifest_list_round_trip(self, client: TestClient) -> None:
        config = b'{"architecture":"arm64","os":"linux"}'
        layer = b"docker layer"
        await push_blob(client, "lib/docker", config)
        await push_blob(client, "lib/docker", layer)
        manifest = orjson.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_V2,
                "config": descriptor(DOCKER_CONFIG, config),
                "layers": [descriptor(DOCKER_LAYER, layer)],
            }
        )
        digest = await put_manifest(client, "lib/docker", "arm64", manifest, DOCKER_V2)
        listing = orjson.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_LIST,
                "manifests": [
                    descriptor(
                        DOCKER_V2, manifest, platform={"architecture": "arm64", "os": "linux"}
                    )
                ],
            }
        )
        await put_manifest(client, "lib/docker", "multi", listing, DOCKER_LIST)
        response = await client.get("/v2/lib/docker/manifests/multi")
        assert response.headers["Content-Type"] == DOCKER_LIST
        assert await response.read() == listing
        assert (await client.get(f"/v2/lib/docker/manifests/{digest}")).status == 200

    async def test_oci_index_of_pushed_manifests_is_accepted(self, client: TestClient) -> None:
        amd = await push_image(client, "lib/multi", None, [b"amd64 layer"])
        arm = await push_image(client, "lib/multi", None, [b"arm64 layer"])
        index = orjson.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    descriptor(OCI_MANIFEST, amd.manifest),
                    descriptor(OCI_MANIFEST, arm.manifest),
                ],
            }
        )
        await put_manifest(client, "lib/multi", "latest", index, OCI_INDEX)
        response = await client.get("/v2/lib/multi/manifests/latest")
        assert response.headers["Content-Type"] == OCI_INDEX
        assert await response.read() == index

    async def test_buildkit_legacy_cache_index_pointing_at_blobs_is_accepted(
        self, client: TestClient
    ) -> None:
        layer = b"cached layer"
        cache_config = b'{"layers":[],"records":[]}'
        await push_blob(client, "ci/cache", layer)
        await push_blob(client, "ci/cache", cache_config)
        index = orjson.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    descriptor(OCI_LAYER, layer, annotations={"buildkit/createdat": "now"}),
                    descriptor(BUILDKIT_CACHE_CONFIG, cache_config),
                ],
            }
        )
        await put_manifest(client, "ci/cache", "buildcache", index, OCI_INDEX)
        response = await client.get("/v2/ci/cache/manifests/buildcache")
        assert await response.read() == index

    async def test_buildkit_oci_manifest_cache_is_accepted(self, client: TestClient) -> None:
        image = await push_image(
            client, "ci/cache", "cache-oci", [b"l1", b"l2"], config_media_type=BUILDKIT_CACHE_CONFIG
        )
        response = await client.get("/v2/ci/cache/manifests/cache-oci")
        assert await response.read() == image.manifest


class TestPutRejections:
    async def test_missing_layer_returns_manifest_blob_unknown(self, client: TestClient) -> None:
        config = await push_blob(client, "lib/app", b"{}")
        body = orjson.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
                "layers": [descriptor(OCI_LAYER, b"never pushed")],
            }
        )
        response = await client.put(
            "/v2/lib/app/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST}
        )
        assert response.status == 400
        assert await error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]
        assert (await client.head("/v2/lib/app/manifests/v1")).status == 404

    async def test_index_with_missing_child_returns_manifest_blob_unknown(
        self, client: TestClient
    ) -> None:
        index = orjson.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [descriptor(OCI_MANIFEST, b'{"not":"pushed"}')],
            }
        )
        response = await client.put(
            "/v2/lib/app/manifests/v1", data=index, headers={"Content-Type": OCI_INDEX}
        )
        assert response.status == 400
        assert await error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]

    async def test_invalid_json_returns_manifest_invalid(self, client: TestClient) -> None:
        for body in [b"{not json", b"\xff\xfe", b"[]", b'{"schemaVersion": 2}']:
            response = await client.put(
                "/v2/lib/app/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST}
            )
            assert response.status == 400, body
            assert await error_codes(response) == ["MANIFEST_INVALID"], body

    async def test_media_type_contradicting_content_type_returns_manifest_invalid(
        self, client: TestClient
    ) -> None:
        image = await push_image(client, "lib/app", "v1")
        response = await client.put(
            "/v2/lib/app/manifests/v2", data=image.manifest, headers={"Content-Type": DOCKER_V2}
        )
        assert response.status == 400
        assert await error_codes(response) == ["MANIFEST_INVALID"]

    async def test_manifest_over_4_mib_is_rejected(self, client: TestClient) -> None:
        body = b'{"schemaVersion":2,"pad":"' + b"x" * (4 * 1024 * 1024) + b'"}'
        response = await client.put(
            "/v2/lib/app/manifests/big", data=body, headers={"Content-Type": OCI_MANIFEST}
        )
        assert response.status in (400, 413)
        assert (await error_codes(response))[0] in ("MANIFEST_INVALID", "SIZE_INVALID")

    async def test_invalid_tag_is_rejected(self, client: TestClient) -> None:
        image = await push_image(client, "lib/app", "v1")
        response = await client.put(
            f"/v2/lib/app/manifests/{'t' * 129}",
            data=image.manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert response.status == 400


class TestTrailingNewline:
    async def test_tag_ending_in_a_newline_is_refused_as_a_client_error(
        self, client: TestClient
    ) -> None:
        """`$` also matches before a final newline; the tag grammar must not let one through."""
        image = await push_image(client, "lib/app", "v1")
        response = await client.put(
            "/v2/lib/app/manifests/v2%0A",
            data=image.manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert response.status == 400


class TestGetErrors:
    async def test_unknown_tag_returns_manifest_unknown(self, client: TestClient) -> None:
        response = await client.get("/v2/lib/app/manifests/nope")
        assert response.status == 404
        assert await error_codes(response) == ["MANIFEST_UNKNOWN"]

    async def test_unknown_digest_returns_manifest_unknown(self, client: TestClient) -> None:
        response = await client.head(f"/v2/lib/app/manifests/{digest_of(b'x')}")
        assert response.status == 404

    async def test_manifest_of_another_repository_is_not_visible(self, client: TestClient) -> None:
        image = await push_image(client, "lib/one", "v1")
        response = await client.get(f"/v2/lib/two/manifests/{image.digest}")
        assert response.status == 404


class TestDelete:
    async def test_delete_tag_keeps_the_manifest(self, client: TestClient) -> None:
        image = await push_image(client, "lib/app", "v1")
        assert (await client.delete("/v2/lib/app/manifests/v1")).status == 202
        assert (await client.head("/v2/lib/app/manifests/v1")).status == 404
        assert (await client.head(f"/v2/lib/app/manifests/{image.digest}")).status == 200

    async def test_delete_by_digest_removes_manifest_and_its_tags(self, client: TestClient) -> None:
        image = await push_image(client, "lib/app", "v1")
        await put_manifest(client, "lib/app", "v1-alias", image.manifest)
        assert (await client.delete(f"/v2/lib/app/manifests/{image.digest}")).status == 202
        for reference in ["v1", "v1-alias", image.digest]:
            assert (await client.head(f"/v2/lib/app/manifests/{reference}")).status == 404
        tags = await client.get("/v2/lib/app/tags/list")
        assert tags.status in (200, 404)

    async def test_delete_unknown_returns_manifest_unknown(self, client: TestClient) -> None:
        response = await client.delete("/v2/lib/app/manifests/nope")
        assert response.status == 404
        assert await error_codes(response) == ["MANIFEST_UNKNOWN"]

    async def test_delete_when_disabled_returns_405(self, make_client: ClientFactory) -> None:
        client = await make_client(Config(storage=StorageConfig(delete=False)))
        await push_image(client, "lib/app", "v1")
        response = await client.delete("/v2/lib/app/manifests/v1")
        assert response.status == 405
        assert await error_codes(response) == ["UNSUPPORTED"]


class TestRestart:
    async def test_everything_pushed_is_served_after_restart(
        self, make_client: ClientFactory
    ) -> None:
        client = await make_client()
        image = await push_image(client, "lib/app", "v1")
        await push_image(client, "lib/app", "v2", [b"other"])
        await client.delete("/v2/lib/app/manifests/v2")
        client = await make_client()
        response = await client.get("/v2/lib/app/manifests/v1")
        assert await response.read() == image.manifest
        assert response.headers["Content-Type"] == OCI_MANIFEST
        assert (await client.head("/v2/lib/app/manifests/v2")).status == 404
        tags = orjson.loads(await (await client.get("/v2/lib/app/tags/list")).read())
        assert tags == {"name": "lib/app", "tags": ["v1"]}
        layer = await client.get(f"/v2/lib/app/blobs/{digest_of(image.layers[0])}")
        assert await layer.read() == image.layers[0]


class TestSchema1:
    async def test_unsigned_schema1_is_stored_and_served_as_pushed(
        self, client: TestClient
    ) -> None:
        layer = b"schema1 layer"
        await push_blob(client, "old/app", layer)
        body = samples.docker_schema1_manifest([samples.ref(layer)], name="old/app", tag="v1")
        digest = await put_manifest(client, "old/app", "v1", body, samples.DOCKER_SCHEMA1)
        assert digest == digest_of(body)
        response = await client.get("/v2/old/app/manifests/v1")
        assert response.headers["Content-Type"] == samples.DOCKER_SCHEMA1
        assert await response.read() == body

    async def test_signed_schema1_is_identified_by_its_canonical_payload(
        self, client: TestClient
    ) -> None:
        layer = b"signed schema1 layer"
        await push_blob(client, "old/app", layer)
        payload = samples.docker_schema1_manifest([samples.ref(layer)], name="old/app", tag="v2")
        signed = samples.sign_schema1(payload)
        digest = await put_manifest(client, "old/app", "v2", signed, samples.DOCKER_SCHEMA1_SIGNED)
        assert digest == digest_of(payload)
        response = await client.get(f"/v2/old/app/manifests/{digest}")
        assert response.headers["Content-Type"] == samples.DOCKER_SCHEMA1_SIGNED
        assert response.headers["Docker-Content-Digest"] == digest
        assert await response.read() == signed


class TestReferences:
    async def test_reference_neither_tag_nor_digest_is_manifest_unknown(
        self, client: TestClient
    ) -> None:
        """Such a manifest cannot exist: 404, as strict clients and conformance checks expect."""
        await push_image(client, "lib/app", "v1")
        for reference in [".INVALID_NAME", "-lead", "a" * 129, "tag%0A", "sha256:"]:
            for method in ["GET", "HEAD", "DELETE"]:
                url = f"/v2/lib/app/manifests/{reference}"
                response = await client.request(method, url)
                assert response.status == 404, (method, reference)
                if method != "HEAD":
                    assert await error_codes(response) == ["MANIFEST_UNKNOWN"], reference

    async def test_put_to_an_invalid_tag_is_tag_invalid(self, client: TestClient) -> None:
        image = await push_image(client, "lib/app", "v1")
        for reference in [".INVALID_NAME", "-lead", "a" * 129]:
            response = await client.put(
                f"/v2/lib/app/manifests/{reference}",
                data=image.manifest,
                headers={"Content-Type": OCI_MANIFEST},
            )
            assert response.status == 400, reference
            assert await error_codes(response) == ["TAG_INVALID"], reference

    async def test_unsupported_digest_algorithm_is_digest_invalid_naming_ours(
        self, client: TestClient
    ) -> None:
        for reference in ["md5:d41d8cd98f00b204e9800998ecf8427e", "sha384:" + "a" * 96, "a:b"]:
            response = await client.get(f"/v2/lib/app/manifests/{reference}")
            assert response.status == 400, reference
            body = orjson.loads(await response.read())
            assert [e["code"] for e in body["errors"]] == ["DIGEST_INVALID"], reference
            assert "sha256, sha512" in body["errors"][0]["message"]


class TestDigestHeader:
    async def test_every_manifest_get_and_head_carries_docker_content_digest(
        self, client: TestClient
    ) -> None:
        image = await push_image(client, "lib/app", "v1")
        for reference in ["v1", image.digest]:
            for method in ["GET", "HEAD"]:
                response = await client.request(method, f"/v2/lib/app/manifests/{reference}")
                assert response.status == 200, (method, reference)
                assert response.headers["Docker-Content-Digest"] == image.digest


class TestMultiTagPush:
    async def test_put_by_digest_with_tags_applies_each_and_answers_oci_tag_headers(
        self, client: TestClient
    ) -> None:
        image = await push_image(client, "lib/app", None)
        response = await client.put(
            f"/v2/lib/app/manifests/{image.digest}?tag=a&tag=b&tag=-bad&tag=a",
            data=image.manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert response.status == 201
        assert response.headers["Docker-Content-Digest"] == image.digest
        assert response.headers.getall("OCI-Tag") == ["a", "b"]
        for tag in ["a", "b"]:
            got = await client.get(f"/v2/lib/app/manifests/{tag}")
            assert got.headers["Docker-Content-Digest"] == image.digest
            assert await got.read() == image.manifest
        listing = await client.get("/v2/lib/app/tags/list")
        assert orjson.loads(await listing.read())["tags"] == ["a", "b"]

    async def test_put_by_digest_without_tags_answers_no_oci_tag(self, client: TestClient) -> None:
        image = await push_image(client, "lib/app", None)
        response = await client.put(
            f"/v2/lib/app/manifests/{image.digest}",
            data=image.manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert response.status == 201
        assert "OCI-Tag" not in response.headers


class TestSignedSchema1:
    async def test_signed_schema1_with_a_made_up_signature_is_manifest_unverified(
        self, client: TestClient
    ) -> None:
        layer = b"signed schema1 layer"
        await push_blob(client, "old/app", layer)
        payload = samples.docker_schema1_manifest([samples.ref(layer)], name="old/app", tag="v2")
        signed = samples.sign_schema1(payload)
        other = samples.sign_schema1(samples.docker_schema1_manifest())
        # Same key, signature of another payload: well-formed, and wrong.
        forged = signed.replace(
            orjson.loads(signed)["signatures"][0]["signature"].encode(),
            orjson.loads(other)["signatures"][0]["signature"].encode(),
        )
        response = await client.put(
            "/v2/old/app/manifests/v2",
            data=forged,
            headers={"Content-Type": samples.DOCKER_SCHEMA1_SIGNED},
        )
        assert response.status == 400
        assert await error_codes(response) == ["MANIFEST_UNVERIFIED"]
        assert (await client.head("/v2/old/app/manifests/v2")).status == 404
