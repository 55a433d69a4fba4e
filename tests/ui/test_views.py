"""The view model: what the pages say a manifest or config is, from their bytes alone."""

from __future__ import annotations

import orjson

from registry.ui import views
from tests.manifest.samples import (
    CONFIG,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    DOCKER_SCHEMA2,
    LAYERS,
    OCI_INDEX,
    OCI_MANIFEST,
    SBOM_SPDX,
    buildkit_cache_index,
    buildkit_cache_manifest,
    docker_manifest_list,
    docker_manifest_v2,
    docker_schema1_manifest,
    oci_artifact_manifest,
    oci_image_index,
    oci_image_manifest,
    sign_schema1,
)


class TestKinds:
    def test_oci_image_is_an_image_whose_size_is_config_plus_layers(self) -> None:
        document = views.read_manifest(oci_image_manifest(), OCI_MANIFEST)
        assert document.kind == views.Kind("image")
        assert document.size == CONFIG[1] + sum(size for _, size in LAYERS)
        assert [layer.digest for layer in document.layers] == [d for d, _ in LAYERS]
        assert document.schema == "OCI image manifest (schemaVersion 2)"

    def test_docker_schema2_is_an_image(self) -> None:
        document = views.read_manifest(docker_manifest_v2(), DOCKER_SCHEMA2)
        assert document.kind.label == "image"
        assert document.schema.startswith("Docker schema 2")

    def test_oci_index_lists_its_platforms(self) -> None:
        document = views.read_manifest(oci_image_index(LAYERS[:2]), OCI_INDEX)
        assert document.kind == views.Kind("index")
        assert document.kind.is_list
        assert [str(e.platform) for e in document.entries] == ["linux/amd64", "linux/arm64/v8"]
        assert all(e.is_manifest for e in document.entries)
        assert document.size is None  # a list's size is its children's

    def test_docker_manifest_list_is_a_manifest_list(self) -> None:
        document = views.read_manifest(docker_manifest_list(LAYERS[:2]), DOCKER_MANIFEST_LIST)
        assert document.kind == views.Kind("manifest list")

    def test_artifact_names_its_artifact_type(self) -> None:
        document = views.read_manifest(oci_artifact_manifest(SBOM_SPDX), OCI_MANIFEST)
        assert document.kind == views.Kind("artifact", SBOM_SPDX)

    def test_buildkit_cache_in_both_forms(self) -> None:
        as_manifest = buildkit_cache_manifest(LAYERS, CONFIG)
        as_index = buildkit_cache_index(LAYERS, CONFIG)
        assert views.read_manifest(as_manifest, OCI_MANIFEST).kind.label == "BuildKit cache"
        assert views.read_manifest(as_index, OCI_INDEX).kind.label == "BuildKit cache"

    def test_schema1_says_whether_it_is_signed_and_lists_layers_bottom_first(self) -> None:
        unsigned = docker_schema1_manifest()
        signed = sign_schema1(unsigned)
        assert views.read_manifest(unsigned, DOCKER_SCHEMA1).kind == views.Kind(
            "schema1", "unsigned"
        )
        document = views.read_manifest(signed, DOCKER_SCHEMA1_SIGNED)
        assert document.kind == views.Kind("schema1", "signed")
        assert document.schema == "Docker schema 1, signed (schemaVersion 1)"
        assert [layer.digest for layer in document.layers] == [d for d, _ in LAYERS]

    def test_bytes_that_are_not_json_read_as_unknown_without_raising(self) -> None:
        document = views.read_manifest(b"\xff not json", "application/octet-stream")
        assert document.kind.label == "unknown"
        assert not document.readable

    def test_fields_of_the_wrong_type_read_as_absent(self) -> None:
        data = orjson.dumps(
            {
                "schemaVersion": 2,
                "config": "nope",
                "layers": [{"digest": 5, "size": -1}, "x"],
                "annotations": {"k": 1, "ok": "v"},
            }
        )
        document = views.read_manifest(data, OCI_MANIFEST)
        assert document.layers == (views.Layer(1, "", "", None),)
        assert document.annotations == (("ok", "v"),)


class TestConfig:
    CONFIG = orjson.dumps(
        {
            "architecture": "arm64",
            "variant": "v8",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "author": "someone",
            "config": {
                "Entrypoint": ["/entry"],
                "Cmd": ["serve", "--port", "80"],
                "Env": ["PATH=/bin", 7],
                "WorkingDir": "/srv",
                "ExposedPorts": {"80/tcp": {}, "443/tcp": {}},
                "Labels": {"b": "2", "a": "1"},
            },
            "history": [
                {"created_by": "ADD rootfs /"},
                {"created_by": "ENV X=1", "empty_layer": True},
                {"created_by": "RUN make"},
            ],
        }
    )

    def test_summary_has_what_people_look_for(self) -> None:
        config = views.read_config(self.CONFIG)
        assert str(config.platform) == "linux/arm64/v8"
        assert config.entrypoint == ("/entry",)
        assert config.cmd == ("serve", "--port", "80")
        assert config.env == ("PATH=/bin",)
        assert config.working_dir == "/srv"
        assert config.exposed_ports == ("443/tcp", "80/tcp")
        assert config.labels == (("a", "1"), ("b", "2"))
        assert [h.empty_layer for h in config.history] == [False, True, False]

    def test_layers_get_the_commands_of_non_empty_history_entries(self) -> None:
        history = views.read_config(self.CONFIG).history
        layers = [views.Layer(1, "sha256:a", "t", 1), views.Layer(2, "sha256:b", "t", 2)]
        commands = [layer.command for layer in views.with_commands(layers, history)]
        assert commands == ["ADD rootfs /", "RUN make"]

    def test_commands_are_left_out_when_history_does_not_match_the_layers(self) -> None:
        history = views.read_config(self.CONFIG).history
        layers = [views.Layer(1, "sha256:a", "t", 1)]
        assert views.with_commands(layers, history)[0].command == ""

    def test_schema1_config_comes_from_its_top_history_entry(self) -> None:
        v1 = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["bash"]}}
        top = {"v1Compatibility": orjson.dumps(v1).decode()}
        data = orjson.dumps({"schemaVersion": 1, "history": [top]})
        config = views.schema1_config(data)
        assert config.cmd == ("bash",)
        assert str(config.platform) == "linux/amd64"

    def test_unreadable_config_is_marked_not_raised(self) -> None:
        assert not views.read_config(b"[1, 2]").readable
        assert not views.read_config(b"{").readable


class TestHostileText:
    def test_controls_and_bidi_overrides_are_made_visible(self) -> None:
        shown = views.text("evil\u202egnp.exe\x00\x1b[31m\u2066x")
        assert shown == "evil\\u202egnp.exe\\u0000\\u001b[31m\\u2066x"

    def test_ordinary_unicode_is_kept(self) -> None:
        assert views.text("Zoë 🐳 中文\tok\n") == "Zoë 🐳 中文\tok\n"

    def test_long_values_are_clipped_with_an_ellipsis(self) -> None:
        assert views.text("x" * 5000) == "x" * views.MAX_TEXT + "…"

    def test_json_values_are_shown_as_json(self) -> None:
        assert views.text({"a": [1]}) == '{"a":[1]}'

    def test_pretty_json_is_cut_at_the_limit_and_says_so(self) -> None:
        data = orjson.dumps({"annotations": {f"k{i}": "v" * 100 for i in range(5000)}})
        shown, cut = views.pretty_json(data)
        assert cut
        assert len(shown) == views.MAX_JSON

    def test_pretty_json_makes_bidi_overrides_visible(self) -> None:
        shown, cut = views.pretty_json(orjson.dumps({"a": "\u202e"}))
        assert "\\u202e" in shown
        assert "\u202e" not in shown
        assert not cut


class TestCut:
    def test_a_page_of_a_long_list_says_how_many_come_after(self) -> None:
        part = views.cut(list(range(250)), 100, 100)
        assert part.items == tuple(range(100, 200))
        assert (part.start, part.total, part.more) == (100, 250, 50)

    def test_a_start_past_the_end_shows_the_last_item(self) -> None:
        part = views.cut(list(range(10)), 500, 100)
        assert part.items == (9,)
        assert part.more == 0
