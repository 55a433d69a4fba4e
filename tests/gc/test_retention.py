"""Retention rules decide which tags go, at a made-up time."""

from __future__ import annotations

import pytest

from registry.config import ConfigError, RetentionRule, UpstreamConfig
from registry.gc.inventory import TagState
from registry.gc.retention import (
    DAY,
    expired_tags,
    mirror_rules,
    pulled_manifests,
    untagged_expiry,
)

NOW = 1_800_000_000.0


def tags(**pushed_days_ago: float) -> dict[str, TagState]:
    return {
        tag: TagState(digest=f"sha256:{i:064x}", pushed=NOW - ago * DAY)
        for i, (tag, ago) in enumerate(pushed_days_ago.items())
    }


class TestExpiredTags:
    def test_keep_last_keeps_the_most_recently_pushed(self) -> None:
        rule = RetentionRule(repositories=("ci/**",), keep_last=2)
        found = expired_tags("ci/cache", tags(a=5, b=1, c=3, d=9), [rule], {}, NOW)
        assert found == {"a", "d"}

    def test_keep_pushed_days_keeps_recent_pushes(self) -> None:
        rule = RetentionRule(repositories=("ci/*",), keep_pushed_days=2)
        assert expired_tags("ci/cache", tags(a=1, b=3), [rule], {}, NOW) == {"b"}

    def test_keep_pulled_days_keeps_tags_pulled_by_tag_or_by_digest(self) -> None:
        rule = RetentionRule(repositories=("ci/*",), keep_pulled_days=7)
        state = tags(old=30, by_digest=30, stale=30, never=30)
        pulls = {
            ("ci/cache", "old"): NOW - 6 * DAY,
            ("ci/cache", state["by_digest"].digest or ""): NOW - 1 * DAY,
            ("ci/cache", "stale"): NOW - 8 * DAY,
        }
        assert expired_tags("ci/cache", state, [rule], pulls, NOW) == {"stale", "never"}

    def test_keep_tags_patterns_keep_matching_tags(self) -> None:
        rule = RetentionRule(repositories=("ci/*",), keep_tags=("v*", "main"))
        found = expired_tags("ci/cache", tags(v1=99, main=99, pr_12=99), [rule], {}, NOW)
        assert found == {"pr_12"}

    def test_a_tag_any_rule_keeps_stays(self) -> None:
        rules = [
            RetentionRule(repositories=("ci/*",), keep_last=1),
            RetentionRule(repositories=("**",), keep_tags=("release",)),
        ]
        found = expired_tags("ci/cache", tags(release=50, new=1, old=20), rules, {}, NOW)
        assert found == {"old"}

    def test_repositories_no_rule_matches_keep_every_tag(self) -> None:
        rule = RetentionRule(repositories=("ci/*",), keep_last=1)
        assert expired_tags("prod/app", tags(a=90, b=80), [rule], {}, NOW) == set()

    def test_a_rule_without_tag_criteria_keeps_every_tag(self) -> None:
        rules = [
            RetentionRule(repositories=("ci/*",), keep_last=1),
            RetentionRule(repositories=("ci/*",), untagged_days=3),
        ]
        assert expired_tags("ci/cache", tags(a=90, b=80), rules, {}, NOW) == set()


class TestUntaggedExpiry:
    def test_the_longest_matching_rule_wins(self) -> None:
        rules = [
            RetentionRule(repositories=("ci/*",), untagged_days=1),
            RetentionRule(repositories=("**",), untagged_days=3),
        ]
        assert untagged_expiry("ci/cache", rules) == 3 * DAY

    def test_a_matching_rule_without_it_keeps_untagged_manifests(self) -> None:
        rules = [
            RetentionRule(repositories=("ci/*",), untagged_days=1),
            RetentionRule(repositories=("**",), keep_last=3),
        ]
        assert untagged_expiry("ci/cache", rules) is None
        assert untagged_expiry("other", rules[:1]) is None


class TestPulledManifests:
    def test_manifests_pulled_by_digest_within_the_window_are_kept(self) -> None:
        rule = RetentionRule(repositories=("ci/*",), keep_pulled_days=7, untagged_days=1)
        pulls = {("ci/cache", "sha256:a"): NOW - 6 * DAY, ("ci/cache", "sha256:b"): NOW - 8 * DAY}
        stored = ["sha256:a", "sha256:b", "sha256:c"]
        assert pulled_manifests("ci/cache", stored, [rule], pulls, NOW) == {"sha256:a"}

    def test_without_keep_pulled_days_no_pull_keeps_a_manifest(self) -> None:
        rule = RetentionRule(repositories=("ci/*",), untagged_days=1)
        pulls = {("ci/cache", "sha256:a"): NOW}
        assert pulled_manifests("ci/cache", ["sha256:a"], [rule], pulls, NOW) == set()


def mirror(prefix: str = "docker.io", days: int = 30) -> UpstreamConfig:
    return UpstreamConfig(name="hub", url="https://hub.test", prefix=prefix, retention_days=days)


class TestMirrorDefaults:
    def test_a_proxied_tag_goes_when_neither_cached_nor_pulled_within_the_days(self) -> None:
        rules = mirror_rules([mirror(days=30)])
        state = tags(pulled=40, cached=10, idle=40)
        pulls = {("docker.io/library/alpine", "pulled"): NOW - 29 * DAY}
        assert expired_tags("docker.io/library/alpine", state, rules, pulls, NOW) == {"idle"}
        assert untagged_expiry("docker.io/library/alpine", rules) == 30 * DAY

    def test_a_configured_rule_matching_the_repository_replaces_the_default(self) -> None:
        configured = RetentionRule(repositories=("docker.io/library/*",), keep_tags=("3.*",))
        rules = (configured, *mirror_rules([mirror(days=30)]))
        state = tags(**{"3.19": 400, "edge": 1})
        assert expired_tags("docker.io/library/alpine", state, rules, {}, NOW) == {"edge"}
        assert untagged_expiry("docker.io/library/alpine", rules) is None
        # Elsewhere under the prefix the default still governs.
        assert expired_tags("docker.io/team/app", state, rules, {}, NOW) == {"3.19"}

    def test_the_default_governs_only_its_upstreams_repositories(self) -> None:
        rules = mirror_rules([mirror(days=30)])
        assert expired_tags("team/app", tags(old=400), rules, {}, NOW) == set()
        assert untagged_expiry("team/app", rules) is None

    def test_retention_days_zero_keeps_the_cache(self) -> None:
        assert mirror_rules([mirror(days=0)]) == ()


class TestRuleConfig:
    def test_a_rule_needs_repository_patterns(self) -> None:
        with pytest.raises(ConfigError, match="repositories"):
            RetentionRule(keep_last=1)

    def test_negative_numbers_are_refused(self) -> None:
        with pytest.raises(ConfigError):
            RetentionRule(repositories=("*",), keep_last=-1)
