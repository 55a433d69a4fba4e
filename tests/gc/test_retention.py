"""Retention rules decide which tags go, at a made-up time."""

from __future__ import annotations

import pytest

from registry.config import ConfigError, RetentionRule
from registry.gc.inventory import TagState
from registry.gc.retention import DAY, expired_tags, untagged_expiry

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


class TestRuleConfig:
    def test_a_rule_needs_repository_patterns(self) -> None:
        with pytest.raises(ConfigError, match="repositories"):
            RetentionRule(keep_last=1)

    def test_negative_numbers_are_refused(self) -> None:
        with pytest.raises(ConfigError):
            RetentionRule(repositories=("*",), keep_last=-1)
