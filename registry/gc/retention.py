"""Retention rules: which tags a collection deletes, and when untagged manifests go.

Pure functions of what storage holds, the recorded pull times and the time
now, so they are tested with a made-up clock. A tag is kept when any rule
matching its repository keeps it; a repository no rule matches keeps every
tag. Push time is the time of the tag's `current` link; pull time is the
latest recorded pull of the tag, or of the digest it points at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from registry.auth.access import compile_pattern
from registry.config import RetentionRule
from registry.gc.inventory import TagState

DAY = 86400.0

#: Recorded pulls: (repository, tag or digest) -> the latest pull time.
Pulls = Mapping[tuple[str, str], float]


def matching(rules: Sequence[RetentionRule], repository: str) -> list[RetentionRule]:
    """The rules whose repository patterns match `repository`."""
    return [
        rule
        for rule in rules
        if any(compile_pattern(p).fullmatch(repository) for p in rule.repositories)
    ]


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


def untagged_expiry(repository: str, rules: Sequence[RetentionRule]) -> float | None:
    """Seconds after which an untagged manifest of `repository` goes, or None for never.

    The longest of the matching rules' `untagged_days`: a rule that keeps
    untagged manifests longer wins, as for tags.
    """
    governing = matching(rules, repository)
    if not governing or not all(rule.untagged_days for rule in governing):
        return None
    return max(rule.untagged_days for rule in governing) * DAY
