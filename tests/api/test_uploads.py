"""Blob uploads: monolithic, chunked, streamed, mounted, cancelled; digests verified."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from aiohttp.test_utils import TestClient

from registry import layout
from registry.drivers.base import StorageDriver
from tests.api.oci import digest_of, error_codes, push_blob


async def start(client: TestClient, name: str = "team/app") -> str:
    response = await client.post(f"/v2/{name}/blobs/uploads/")
    assert response.status == 202
    assert response.headers["Range"] == "0-0"
    assert response.headers["Docker-Upload-UUID"]
    return response.headers["Location"]


class TestMonolithicUpload:
    async def test_post_with_digest_stores_blob_and_returns_201_with_location(
        self, client: TestClient
    ) -> None:
        data = b"hello blob"
        digest = digest_of(data)
        response = await client.post(f"/v2/team/app/blobs/uploads/?digest={digest}", data=data)
        assert response.status == 201
        assert response.headers["Location"] == f"/v2/team/app/blobs/{digest}"
        assert response.headers["Docker-Content-Digest"] == digest
        blob = await client.get(f"/v2/team/app/blobs/{digest}")
        assert blob.status == 200
        assert await blob.read() == data

    async def test_post_with_wrong_digest_returns_digest_invalid_and_stores_nothing(
        self, client: TestClient
    ) -> None:
        wrong = digest_of(b"something else")
        response = await client.post(f"/v2/team/app/blobs/uploads/?digest={wrong}", data=b"x")
        assert response.status == 400
        assert await error_codes(response) == ["DIGEST_INVALID"]
        assert (await client.head(f"/v2/team/app/blobs/{wrong}")).status == 404

    async def test_post_with_malformed_digest_returns_digest_invalid(
        self, client: TestClient
    ) -> None:
        response = await client.post("/v2/team/app/blobs/uploads/?digest=sha256:xyz", data=b"x")
        assert response.status == 400
        assert await error_codes(response) == ["DIGEST_INVALID"]

    async def test_sha512_digest_is_verified_and_served(self, client: TestClient) -> None:
        data = b"sha512 content"
        digest = "sha512:" + hashlib.sha512(data).hexdigest()
        response = await client.post(f"/v2/team/app/blobs/uploads/?digest={digest}", data=data)
        assert response.status == 201
        blob = await client.get(f"/v2/team/app/blobs/{digest}")
        assert await blob.read() == data

    async def test_zero_byte_blob_round_trips(self, client: TestClient) -> None:
        digest = await push_blob(client, "team/app", b"")
        head = await client.head(f"/v2/team/app/blobs/{digest}")
        assert head.status == 200
        assert head.headers["Content-Length"] == "0"

    async def test_empty_bodies_one_after_another_each_complete(self, client: TestClient) -> None:
        """aiohttp hands every empty body the same reader; each request must still end."""
        empty = digest_of(b"")
        for name in ("team/one", "team/two"):
            assert await push_blob(client, name, b"") == empty
        location = await start(client)
        patched = await client.patch(location, data=b"")
        assert patched.status == 202
        finished = await client.put(f"{patched.headers['Location']}?digest={empty}", data=b"")
        assert finished.status == 201

    async def test_post_then_put_with_body_completes_upload(self, client: TestClient) -> None:
        location = await start(client)
        data = b"post then put"
        response = await client.put(f"{location}?digest={digest_of(data)}", data=data)
        assert response.status == 201
        assert response.headers["Docker-Content-Digest"] == digest_of(data)


class TestChunkedUpload:
    async def test_chunks_in_order_assemble_the_blob(self, client: TestClient) -> None:
        location = await start(client)
        chunks = [b"a" * 1000, b"b" * 3000, b"c" * 7]
        offset = 0
        for chunk in chunks:
            end = offset + len(chunk) - 1
            response = await client.patch(
                location,
                data=chunk,
                headers={
                    "Content-Range": f"{offset}-{end}",
                    "Content-Type": "application/octet-stream",
                },
            )
            assert response.status == 202
            assert response.headers["Range"] == f"0-{end}"
            location = response.headers["Location"]
            offset = end + 1
        data = b"".join(chunks)
        response = await client.put(f"{location}?digest={digest_of(data)}")
        assert response.status == 201
        blob = await client.get(f"/v2/team/app/blobs/{digest_of(data)}")
        assert await blob.read() == data

    async def test_streamed_patch_without_content_range_is_accepted(
        self, client: TestClient
    ) -> None:
        location = await start(client)
        response = await client.patch(location, data=b"streamed")
        assert response.status == 202
        assert response.headers["Range"] == "0-7"

    async def test_out_of_order_chunk_returns_416_with_current_range(
        self, client: TestClient
    ) -> None:
        location = await start(client)
        await client.patch(location, data=b"12345", headers={"Content-Range": "0-4"})
        response = await client.patch(location, data=b"xx", headers={"Content-Range": "10-11"})
        assert response.status == 416
        assert response.headers["Range"] == "0-4"
        assert await error_codes(response) == ["BLOB_UPLOAD_INVALID"]

    async def test_malformed_content_range_returns_400(self, client: TestClient) -> None:
        location = await start(client)
        response = await client.patch(location, data=b"x", headers={"Content-Range": "a-b"})
        assert response.status == 400
        assert await error_codes(response) == ["BLOB_UPLOAD_INVALID"]

    async def test_status_reports_bytes_received(self, client: TestClient) -> None:
        location = await start(client)
        await client.patch(location, data=b"abc", headers={"Content-Range": "0-2"})
        response = await client.get(location)
        assert response.status == 204
        assert response.headers["Range"] == "0-2"
        assert response.headers["Docker-Upload-UUID"]

    async def test_finish_with_wrong_digest_returns_digest_invalid_and_ends_session(
        self, client: TestClient
    ) -> None:
        location = (await client.patch(await start(client), data=b"abc")).headers["Location"]
        wrong = digest_of(b"abd")
        response = await client.put(f"{location}?digest={wrong}")
        assert response.status == 400
        assert await error_codes(response) == ["DIGEST_INVALID"]
        assert (await client.head(f"/v2/team/app/blobs/{wrong}")).status == 404
        assert (await client.get(location)).status == 404

    async def test_finish_without_digest_returns_digest_invalid(self, client: TestClient) -> None:
        location = await start(client)
        response = await client.put(location)
        assert response.status == 400
        assert await error_codes(response) == ["DIGEST_INVALID"]

    async def test_upload_continues_after_restart(self, make_client) -> None:  # type: ignore[no-untyped-def]
        client = await make_client()
        location = await start(client)
        await client.patch(location, data=b"first-", headers={"Content-Range": "0-5"})
        client = await make_client()
        response = await client.patch(location, data=b"second", headers={"Content-Range": "6-11"})
        assert response.status == 202
        data = b"first-second"
        response = await client.put(f"{location}?digest={digest_of(data)}")
        assert response.status == 201
        assert await (await client.get(f"/v2/team/app/blobs/{digest_of(data)}")).read() == data


class TestUploadSessions:
    async def test_cancel_returns_204_and_forgets_the_session(self, client: TestClient) -> None:
        location = (await client.patch(await start(client), data=b"abc")).headers["Location"]
        assert (await client.delete(location)).status == 204
        response = await client.get(location)
        assert response.status == 404
        assert await error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"]

    async def test_cancel_of_a_session_without_bytes_returns_204_and_stores_nothing(
        self, client: TestClient, storage: StorageDriver
    ) -> None:
        assert (await client.delete(await start(client))).status == 204
        assert [info async for info in storage.walk(layout.ROOT)] == []

    async def test_post_answers_a_fresh_location_that_a_first_chunk_turns_into_the_id(
        self, client: TestClient, storage: StorageDriver
    ) -> None:
        response = await client.post("/v2/team/app/blobs/uploads/")
        upload_id = response.headers["Docker-Upload-UUID"]
        assert response.headers["Location"] == f"/v2/team/app/blobs/uploads/{upload_id}.new"
        assert [info async for info in storage.walk(layout.ROOT)] == []
        patched = await client.patch(response.headers["Location"], data=b"abc")
        assert patched.headers["Location"] == f"/v2/team/app/blobs/uploads/{upload_id}"
        assert patched.headers["Docker-Upload-UUID"] == upload_id
        status = await client.get(patched.headers["Location"])
        assert status.status == 204
        assert status.headers["Range"] == "0-2"

    @pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "with-bytes"])
    async def test_a_forged_upload_id_returns_blob_upload_unknown_to_every_method(
        self, client: TestClient, fresh: bool
    ) -> None:
        location = await start(client)
        if not fresh:
            location = (await client.patch(location, data=b"abc")).headers["Location"]
        upload_id = location.rsplit("/", 1)[1].removesuffix(".new")
        flipped = upload_id[:-1] + ("0" if upload_id[-1] != "0" else "1")
        forged = location.replace(upload_id, flipped)
        digest = digest_of(b"abc")
        for method, url in [
            ("PATCH", forged),
            ("PUT", f"{forged}?digest={digest}"),
            ("GET", forged),
            ("DELETE", forged),
        ]:
            response = await client.request(method, url, data=b"abc")
            assert response.status == 404, method
            assert await error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"], method
        assert (await client.head(f"/v2/team/app/blobs/{digest}")).status == 404

    async def test_unknown_upload_id_returns_blob_upload_unknown(self, client: TestClient) -> None:
        response = await client.patch(
            "/v2/team/app/blobs/uploads/00000000-0000-4000-8000-000000000000", data=b"x"
        )
        assert response.status == 404
        assert await error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"]

    async def test_path_tricks_in_upload_id_return_blob_upload_unknown(
        self, client: TestClient
    ) -> None:
        for upload_id in ["..", "..%2F..%2Fetc", "abc", "%2e%2e"]:
            response = await client.get(f"/v2/team/app/blobs/uploads/{upload_id}")
            assert response.status in (404, 400), upload_id
            # Dot segments are resolved before routing: no route, or no such session.
            codes = await error_codes(response)
            assert codes in (["BLOB_UPLOAD_UNKNOWN"], ["NOT_FOUND"], ["NAME_INVALID"]), upload_id

    async def test_upload_id_is_bound_to_its_repository(self, client: TestClient) -> None:
        location = await start(client, "team/app")
        other = location.replace("/team/app/", "/team/other/")
        response = await client.patch(other, data=b"x")
        assert response.status == 404
        assert await error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"]


class TestMount:
    async def test_mount_from_repository_holding_the_blob_returns_201(
        self, client: TestClient
    ) -> None:
        digest = await push_blob(client, "source/repo", b"shared layer")
        response = await client.post(
            f"/v2/target/repo/blobs/uploads/?mount={digest}&from=source/repo"
        )
        assert response.status == 201
        assert response.headers["Location"] == f"/v2/target/repo/blobs/{digest}"
        assert (await client.head(f"/v2/target/repo/blobs/{digest}")).status == 200

    async def test_mount_from_repository_lacking_the_blob_opens_a_session(
        self, client: TestClient
    ) -> None:
        digest = digest_of(b"nowhere")
        response = await client.post(
            f"/v2/target/repo/blobs/uploads/?mount={digest}&from=source/repo"
        )
        assert response.status == 202
        assert "/blobs/uploads/" in response.headers["Location"]


class TestHostileUploadInput:
    """Client numbers and ids that once made server faults are client errors now."""

    async def test_content_range_with_non_ascii_digits_returns_400(
        self, client: TestClient
    ) -> None:
        location = await start(client)
        for value in ["²-²", "0-²", "٣-٤", "0 -1", "-1-2", "0x1-0x2"]:
            response = await client.patch(location, data=b"x", headers={"Content-Range": value})
            assert response.status == 400, value
            assert await error_codes(response) == ["BLOB_UPLOAD_INVALID"], value

    async def test_content_range_with_thousands_of_digits_returns_400(
        self, client: TestClient
    ) -> None:
        location = await start(client)
        response = await client.patch(
            location, data=b"x", headers={"Content-Range": "0-" + "9" * 5000}
        )
        assert response.status == 400
        assert await error_codes(response) == ["BLOB_UPLOAD_INVALID"]
        assert (await client.get(location)).headers["Range"] == "0-0"

    async def test_upload_id_with_a_trailing_newline_returns_blob_upload_unknown(
        self, client: TestClient
    ) -> None:
        location = await start(client)
        for method in ["GET", "PATCH", "PUT", "DELETE"]:
            response = await client.request(method, f"{location}%0A?digest={digest_of(b'')}")
            assert response.status == 404, method
            assert await error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"], method

    async def test_content_range_in_rfc_form_is_accepted(self, client: TestClient) -> None:
        location = await start(client)
        response = await client.patch(
            location, data=b"abc", headers={"Content-Range": "bytes 0-2/*"}
        )
        assert response.status == 202
        assert response.headers["Range"] == "0-2"


class TestUnsupportedDigests:
    async def test_post_with_unsupported_algorithm_returns_digest_invalid_naming_ours(
        self, client: TestClient
    ) -> None:
        for digest in ["md5:d41d8cd98f00b204e9800998ecf8427e", "sha384:" + "a" * 96, "a:b"]:
            response = await client.post(f"/v2/team/app/blobs/uploads/?digest={digest}", data=b"")
            assert response.status == 400, digest
            body = orjson.loads(await response.read())
            assert [e["code"] for e in body["errors"]] == ["DIGEST_INVALID"], digest
            assert "sha256" in body["errors"][0]["message"], digest

    async def test_finish_with_unsupported_algorithm_returns_digest_invalid_and_keeps_session(
        self, client: TestClient
    ) -> None:
        location = await start(client)
        await client.patch(location, data=b"abc")
        response = await client.put(f"{location}?digest=md5:d41d8cd98f00b204e9800998ecf8427e")
        assert response.status == 400
        assert await error_codes(response) == ["DIGEST_INVALID"]
        assert (await client.get(location)).headers["Range"] == "0-2"


class TestChunksOutOfPlace:
    async def test_final_put_with_out_of_order_chunk_returns_416_and_keeps_the_session(
        self, client: TestClient
    ) -> None:
        location = await start(client)
        patched = await client.patch(location, data=b"12345", headers={"Content-Range": "0-4"})
        data = b"1234567890"
        response = await client.put(
            f"{location}?digest={digest_of(data)}",
            data=b"90",
            headers={"Content-Range": "8-9"},
        )
        assert response.status == 416
        assert response.headers["Range"] == "0-4"
        assert response.headers["Location"] == patched.headers["Location"]
        assert await error_codes(response) == ["BLOB_UPLOAD_INVALID"]
        status = await client.get(location)
        assert status.status == 204
        assert status.headers["Range"] == "0-4"
        done = await client.put(
            f"{location}?digest={digest_of(data)}",
            data=b"67890",
            headers={"Content-Range": "5-9"},
        )
        assert done.status == 201
        assert await (await client.get(f"/v2/team/app/blobs/{digest_of(data)}")).read() == data

    async def test_out_of_order_patch_answers_the_session_location(
        self, client: TestClient
    ) -> None:
        location = await start(client)
        patched = await client.patch(location, data=b"12345", headers={"Content-Range": "0-4"})
        response = await client.patch(location, data=b"xx", headers={"Content-Range": "10-11"})
        assert response.status == 416
        assert response.headers["Location"] == patched.headers["Location"]

    async def test_a_last_chunk_put_to_the_post_location_returns_416_and_keeps_the_session(
        self, client: TestClient
    ) -> None:
        """The POST's Location names a session with no bytes; this one has some."""
        location = await start(client)
        patched = await client.patch(location, data=b"12345")
        data = b"1234567890"
        response = await client.put(f"{location}?digest={digest_of(data)}", data=b"67890")
        assert response.status == 416
        assert await error_codes(response) == ["BLOB_UPLOAD_INVALID"]
        assert response.headers["Range"] == "0-4"
        assert response.headers["Location"] == patched.headers["Location"]
        assert (await client.head(f"/v2/team/app/blobs/{digest_of(data)}")).status == 404
        done = await client.put(
            f"{response.headers['Location']}?digest={digest_of(data)}", data=b"67890"
        )
        assert done.status == 201
        assert await (await client.get(f"/v2/team/app/blobs/{digest_of(data)}")).read() == data

    async def test_chunks_and_a_bodiless_put_all_sent_to_the_post_location_complete(
        self, client: TestClient
    ) -> None:
        location = await start(client)
        for offset, chunk in ((0, b"12345"), (5, b"67890")):
            response = await client.patch(
                location,
                data=chunk,
                headers={"Content-Range": f"{offset}-{offset + len(chunk) - 1}"},
            )
            assert response.status == 202
        data = b"1234567890"
        done = await client.put(f"{location}?digest={digest_of(data)}")
        assert done.status == 201
        assert await (await client.get(f"/v2/team/app/blobs/{digest_of(data)}")).read() == data

    @pytest.mark.parametrize("length", [150, 50, 0], ids=["longer", "shorter", "empty"])
    async def test_patch_whose_length_disagrees_with_its_content_range_appends_nothing(
        self, client: TestClient, length: int
    ) -> None:
        location = await start(client)
        await client.patch(location, data=b"a" * 100, headers={"Content-Range": "0-99"})
        response = await client.patch(
            location, data=b"b" * length, headers={"Content-Range": "100-199"}
        )
        assert response.status == 400
        assert await error_codes(response) == ["SIZE_INVALID"]
        assert response.headers["Range"] == "0-99"
        assert (await client.get(location)).headers["Range"] == "0-99"
        response = await client.patch(
            location, data=b"b" * 100, headers={"Content-Range": "100-199"}
        )
        assert response.status == 202
        assert response.headers["Range"] == "0-199"


class TestMountWithoutSource:
    async def test_mount_without_from_links_a_blob_stored_in_another_repository(
        self, client: TestClient
    ) -> None:
        digest = await push_blob(client, "source/repo", b"shared layer")
        response = await client.post(f"/v2/target/repo/blobs/uploads/?mount={digest}")
        assert response.status == 201
        assert response.headers["Location"] == f"/v2/target/repo/blobs/{digest}"
        assert response.headers["Docker-Content-Digest"] == digest
        blob = await client.get(f"/v2/target/repo/blobs/{digest}")
        assert await blob.read() == b"shared layer"

    async def test_mount_without_from_of_an_unknown_blob_opens_a_session(
        self, client: TestClient
    ) -> None:
        response = await client.post(f"/v2/target/repo/blobs/uploads/?mount={digest_of(b'no')}")
        assert response.status == 202
        assert "/v2/target/repo/blobs/uploads/" in response.headers["Location"]

    async def test_mount_without_from_survives_a_restart(self, make_client) -> None:  # type: ignore[no-untyped-def]
        client = await make_client()
        digest = await push_blob(client, "source/repo", b"shared layer")
        client = await make_client()
        response = await client.post(f"/v2/target/repo/blobs/uploads/?mount={digest}")
        assert response.status == 201
