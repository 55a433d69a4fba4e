"""Retention rules: which tags a collection deletes, and when untagged manifests go.

Pure functions of what storage holds, the recorded pull times and the time
now, so they are tested with a made-up clock. A tag is kept when any rule
matching its repository keeps it; a repository no rule matches keeps every
tag. Push time is the time of the tag's `current` link; pull time is the
latest recorded pull of the tag, or of the digest it points at.

The repositories of a pull-through cache's upstream have a default rule
(`MirrorRule`, from the upstream's `retention_days`) that governs them when no
configured rule matches them: what was cached or pulled within that many days
stays, by tag or by digest, and the rest goes. The upstream still has it: a
pull of what went fetches it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from registry.auth.access import compile_pattern
from registry.config import RetentionRule, UpstreamConfig
from registry.gc.inventory import TagState

DAY = 86400.0

#: Recorded pulls: (repository, tag or digest) -> the latest pull time.
Pulls = Mapping[tuple[str, str], float]


@dataclass(frozen=True, slots=True)
class MirrorRule(RetentionRule):
    """The default rule of an upstream's repositories: it yields to any configured rule."""


def mirror_rules(upstreams: Iterable[UpstreamConfig]) -> tuple[RetentionRule, ...]:
    """The default rules of the upstreams' repositories; none for `retention_days = 0`.

    Caching a manifest is a pull, so "cached within D days" counts as pulled:
    that covers pull records a crashed process never flushed.
    """
    return tuple(
        MirrorRule(
            repositories=(f"{upstream.prefix}/**",),
            keep_pulled_days=upstream.retention_days,
            keep_pushed_days=upstream.retention_days,
            untagged_days=upstream.retention_days,
        )
        for upstream in upstreams
        if upstream.retention_days
    )


def matching(rules: Sequence[RetentionRule], repository: str) -> list[RetentionRule]:
    """The rules governing `repository`: the configured ones matching it, else the defaults."""
    found = [
        rule
        for rule in rules
        if any(compile_pattern(p).fullmatch(repository) for p in rule.repositories)
    ]
    configured = [rule for rule in found if not isinstance(rule, MirrorRule)]
    return configured or found


def keeps_pulls(rules: Sequence[RetentionRule]) -> bool:
    """Whether any rule looks at pull times (else they need not be read)."""
    return any(rule.keep_pulled_days for rule in rules)


def expired_tags(
    repository: str,
    tags: Mapping[str, TagState],
    rules: Sequence[RetentionRule],
    pulls: Pulls,
    now: float,
) -> set[str]:
    """The tags of `repository` that no matching rule keeps."""
    governing = matching(rules, repository)
    if not governing or not all(rule.governs_tags for rule in governing):
        return set()
    kept: set[str] = set()
    newest_first = sorted(tags, key=lambda t: (tags[t].pushed, t), reverse=True)
    for rule in governing:
        kept.update(newest_first[: rule.keep_last])
        for tag, state in tags.items():
            if rule.keep_pushed_days and now - state.pushed <= rule.keep_pushed_days * DAY:
                kept.add(tag)
            if rule.keep_pulled_days:
                pulled = max(
                    pulls.get((repository, tag), 0.0),
                    pulls.get((repository, state.digest or ""), 0.0),
                )
                if pulled and now - pulled <= rule.keep_pulled_days * DAY:
                    kept.add(tag)
            if any(compile_pattern(p).fullmatch(tag) for p in rule.keep_tags):
                kept.add(tag)
    return set(tags) - kept


def pulled_manifests(
    repository: str,
    manifests: Iterable[str],
    rules: Sequence[RetentionRule],
    pulls: Pulls,
    now: float,
) -> set[str]:
    """The manifests of `repository` pulled by digest within a matching rule's `keep_pulled_days`.

    They are kept as a tag would keep them, with what they reach: an image
    pinned by digest stays while it is pulled, tagged or not.
    """
    days = max((rule.keep_pulled_days for rule in matching(rules, repository)), default=0.0)
    if not days:
        return set()
    kept: set[str] = set()
    for digest in manifests:
        pulled = pulls.get((repository, digest))
        if pulled is not None and now - pulled <= days * DAY:
            kept.add(digest)
    return kept


def untagged_expiry(repository: str, rules: Sequence[RetentionRule]) -> float | None:
    """Seconds after which an untagged manifest of `repository` goes, or None for never.

    The longest of the matching rules' `untagged_days`: a rule that keeps
    untagged manifests longer wins, as for tags.
    """
    governing = matching(rules, repository)
    if not governing or not all(rule.untagged_days for rule in governing):
        return None
    return max(rule.untagged_days for rule in governing) * DAY
