"""Scopes, repository patterns and the decisions of the access rules."""

from __future__ import annotations

import pytest

from registry.auth.access import (
    CATALOG,
    Access,
    Grant,
    Policy,
    compile_pattern,
    format_scopes,
    parse_scope,
    repository_access,
)
from registry.config import AccessRule
from tests.auth.conftest import GROUPS, RULES


class TestScopes:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("repository:team/app:pull", [Access("repository", "team/app", "pull")]),
            (
                "repository:team/app:pull,push",
                [
                    Access("repository", "team/app", "pull"),
                    Access("repository", "team/app", "push"),
                ],
            ),
            ("registry:catalog:*", [CATALOG]),
            (
                "repository:localhost:5000/app:pull",
                [Access("repository", "localhost:5000/app", "pull")],
            ),
            ("repository(plugin):app:pull", [Access("repository", "app", "pull")]),
        ],
    )
    def test_scope_parses_into_its_accesses(self, text: str, expected: list[Access]) -> None:
        assert parse_scope(text) == expected

    @pytest.mark.parametrize("text", ["", "repository", "repository:app", "::", "repository::pull"])
    def test_malformed_scope_grants_nothing(self, text: str) -> None:
        assert parse_scope(text) == []

    def test_accesses_format_as_one_scope_per_resource(self) -> None:
        accesses = [
            *repository_access("a", "pull", "push"),
            CATALOG,
            *repository_access("a", "pull"),
        ]
        assert format_scopes(accesses) == "repository:a:pull,push registry:catalog:*"


class TestPatterns:
    @pytest.mark.parametrize(
        ("pattern", "name", "matches"),
        [
            ("team/*", "team/app", True),
            ("team/*", "team/app/sub", False),
            ("team/**", "team/app/sub", True),
            ("team/**", "teamx/app", False),
            ("**", "anything/at/all", True),
            ("app-?", "app-1", True),
            ("app-?", "app-12", False),
            ("a.b", "aXb", False),
            ("team/*/cache", "team/x/cache", True),
        ],
    )
    def test_glob_matches_whole_names(self, pattern: str, name: str, matches: bool) -> None:
        assert (compile_pattern(pattern).fullmatch(name) is not None) is matches


class TestPolicy:
    policy = Policy(RULES, GROUPS)

    @pytest.mark.parametrize(
        ("user", "access", "allowed"),
        [
            ("alice", Access("repository", "x/y", "delete"), True),
            ("alice", CATALOG, True),
            ("bob", Access("repository", "team/app", "pull"), True),
            ("bob", Access("repository", "team/app", "push"), False),
            ("bob", CATALOG, False),
            ("carol", Access("repository", "team/a/b", "push"), True),
            ("carol", Access("repository", "team/a", "delete"), False),
            ("carol", Access("repository", "other", "pull"), False),
            (None, Access("repository", "public/base", "pull"), True),
            ("bob", Access("repository", "public/base", "pull"), True),
            (None, Access("repository", "public/base", "push"), False),
            (None, Access("repository", "team/app", "pull"), False),
            ("mallory", Access("repository", "public/base", "pull"), True),
            ("mallory", Access("repository", "team/app", "pull"), False),
            ("alice", Access("repository", "x", "*"), True),
            ("carol", Access("repository", "team/x", "*"), False),
            ("alice", Access("repository", "x", "admin"), False),
            ("alice", Access("plugin", "x", "pull"), False),
        ],
    )
    def test_rules_grant_exactly_what_they_say(
        self, user: str | None, access: Access, allowed: bool
    ) -> None:
        assert self.policy.allows(user, access) is allowed

    def test_any_user_rule_excludes_anonymous_clients(self) -> None:
        policy = Policy([AccessRule(repositories=("**",), users=("*",), actions=("pull",))], [])
        assert policy.allows("anyone", Access("repository", "x", "pull"))
        assert not policy.allows(None, Access("repository", "x", "pull"))

    def test_grant_keeps_the_allowed_part_of_a_request_once(self) -> None:
        requested = [*repository_access("team/app", "pull", "push", "pull"), CATALOG]
        assert self.policy.grant("bob", requested) == list(repository_access("team/app", "pull"))

    def test_no_rules_deny_everything(self) -> None:
        assert not Policy([], []).allows("alice", Access("repository", "x", "pull"))


class TestGrant:
    def test_token_grant_covers_its_actions_and_wildcards(self) -> None:
        grant = Grant([*repository_access("a", "pull"), *repository_access("b", "*")])
        assert grant.covers(Access("repository", "a", "pull"))
        assert not grant.covers(Access("repository", "a", "push"))
        assert grant.covers(Access("repository", "b", "delete"))
        assert not grant.covers(CATALOG)
