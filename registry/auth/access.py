"""Who may do what: accesses, scopes, repository patterns and the configured access rules.

The vocabulary is the Docker token specification's. An `Access` is one action
on one resource (`repository:team/app:push`, `registry:catalog:*`); a scope is
the text clients send to a token server and challenges carry, several actions
on one resource (`repository:team/app:pull,push`).

`Policy` decides from the `[[auth.access]]` rules. Rules only grant: an access
no rule grants is denied. Repository patterns are globs over names: `*`
matches within one path component, `**` across components, `?` one character.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from registry.config import AccessRule, GroupConfig

REPOSITORY = "repository"
PULL = "pull"
PUSH = "push"
DELETE = "delete"
#: In a token's `access` claim: every action on the resource.
ANY_ACTION = "*"
#: The action of rules that grants listing the catalog.
CATALOG_ACTION = "catalog"


@dataclass(frozen=True, slots=True)
class Access:
    """One action on one typed, named resource."""

    type: str
    name: str
    action: str


#: Listing `/v2/_catalog`, as Distribution and Docker name it.
CATALOG = Access("registry", "catalog", ANY_ACTION)


def repository_access(name: str, *actions: str) -> tuple[Access, ...]:
    """The accesses of `actions` on repository `name`."""
    return tuple(Access(REPOSITORY, name, action) for action in actions)


def parse_scope(text: str) -> list[Access]:
    """The accesses a scope names; `[]` for a malformed one.

    The grammar is `type[(class)]:name:action[,action...]`. The name may
    itself contain colons (a registry host with a port), so the type ends at
    the first colon and the actions start after the last one.
    """
    kind, _, rest = text.partition(":")
    name, _, actions = rest.rpartition(":")
    kind = kind.partition("(")[0]
    if not (kind and name and actions):
        return []
    return [Access(kind, name, action) for action in actions.split(",") if action]


def format_scopes(accesses: Iterable[Access]) -> str:
    """Accesses as scopes, one per resource, space-separated, in first-seen order."""
    by_resource: dict[tuple[str, str], list[str]] = {}
    for access in accesses:
        actions = by_resource.setdefault((access.type, access.name), [])
        if access.action not in actions:
            actions.append(access.action)
    return " ".join(
        f"{kind}:{name}:{','.join(actions)}" for (kind, name), actions in by_resource.items()
    )


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression of a repository glob (`*`, `**`, `?`; all else literal)."""
    parts = re.split(r"(\*\*|\*|\?)", pattern)
    translated = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(translated.get(part, re.escape(part)) for part in parts))


class Policy:
    """The access rules of the configuration, resolved once, asked per request.

    A user is a name, or None for an anonymous client. Rules with `anonymous`
    apply to everyone; `users = ["*"]` to every authenticated user.
    """

    def __init__(self, rules: Sequence[AccessRule], groups: Sequence[GroupConfig]) -> None:
        members: dict[str, set[str]] = {}
        for group in groups:
            members.setdefault(group.name, set()).update(group.members)
        self._rules = [
            _Rule(
                users=frozenset(rule.users).union(*(members[g] for g in rule.groups)),
                everyone=rule.anonymous,
                any_user="*" in rule.users,
                patterns=tuple(compile_pattern(p) for p in rule.repositories),
                actions=frozenset(rule.actions),
            )
            for rule in rules
        ]

    def allows(self, user: str | None, access: Access) -> bool:
        """True if some rule grants `access` to `user`.

        A repository access of action `*` needs pull, push and delete.
        """
        if access.type == REPOSITORY and access.action == ANY_ACTION:
            return all(
                self.allows(user, Access(REPOSITORY, access.name, action))
                for action in (PULL, PUSH, DELETE)
            )
        return any(rule.applies_to(user) and rule.grants(access) for rule in self._rules)

    def grant(self, user: str | None, requested: Iterable[Access]) -> list[Access]:
        """The requested accesses the rules allow `user`, without duplicates, in order."""
        granted: list[Access] = []
        for access in requested:
            if access not in granted and self.allows(user, access):
                granted.append(access)
        return granted


@dataclass(frozen=True, slots=True)
class _Rule:
    users: frozenset[str]
    everyone: bool
    any_user: bool
    patterns: tuple[re.Pattern[str], ...]
    actions: frozenset[str]

    def applies_to(self, user: str | None) -> bool:
        if self.everyone:
            return True
        return user is not None and (self.any_user or user in self.users)

    def grants(self, access: Access) -> bool:
        if access == CATALOG:
            return CATALOG_ACTION in self.actions
        if access.type != REPOSITORY or access.action not in self.actions - {CATALOG_ACTION}:
            return False
        return any(pattern.fullmatch(access.name) for pattern in self.patterns)


class Grant:
    """The accesses a verified token carries in its `access` claim."""

    def __init__(self, accesses: Iterable[Access]) -> None:
        self._actions: dict[tuple[str, str], set[str]] = {}
        for access in accesses:
            self._actions.setdefault((access.type, access.name), set()).add(access.action)

    def covers(self, access: Access) -> bool:
        """True if the token allows `access`; a `*` action in the claim allows every action."""
        actions = self._actions.get((access.type, access.name), set())
        return access.action in actions or ANY_ACTION in actions
