"""Cargobay's configuration: one typed object, built once at start-up and passed down.

Sources, later ones winning: built-in defaults, a TOML file, then environment
variables named after the key's path (`CARGOBAY_HTTP__ADDR`,
`CARGOBAY_STORAGE__S3__BUCKET`): `CARGOBAY_`, then the section and key names in
upper case joined by `__`. Unknown keys and values of the wrong type are
errors (`ConfigError`) that name the offending key, so a typo never silently
falls back to a default. Nothing else in the code reads the environment.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from registry.manifest.parse import MAX_MANIFEST_SIZE

ENV_PREFIX = "CARGOBAY_"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and the problem."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """HTTPS served directly from a PEM certificate chain and key; both empty: plain HTTP."""

    cert: str = ""
    key: str = ""

    def __post_init__(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise ConfigError("cert and key must be set together")

    @property
    def enabled(self) -> bool:
        return bool(self.cert)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The listening socket, and the reverse proxies whose forwarded headers are believed."""

    addr: str = "127.0.0.1:5000"
    trusted_proxies: tuple[str, ...] = ()
    tls: TlsConfig = field(default_factory=TlsConfig)
    #: Processes serving the one listening socket; 0 means one per CPU core.
    workers: int = 0

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError("workers must be 0 (one per CPU core) or more")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as e:
                raise ConfigError(f"trusted_proxies: {e}") from e

    @property
    def host(self) -> str:
        host, _, _ = self.addr.rpartition(":")
        return host.strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.addr.rpartition(":")[2])


@dataclass(frozen=True, slots=True)
class FilesystemConfig:
    """The filesystem driver: everything lives below `root`."""

    root: str = "./data"


@dataclass(frozen=True, slots=True)
class S3Config:
    """The S3 driver (AWS S3, MinIO, SeaweedFS, Ceph RGW ...)."""

    bucket: str = ""
    endpoint_url: str = ""
    region: str = "us-east-1"
    prefix: str = ""
    access_key: str = ""
    secret_key: str = field(default="", repr=False)  # never printed or logged
    path_style: bool = False
    verify_tls: bool = True
    redirect: bool = False
    redirect_expiry_seconds: int = 1200
    server_side_encryption: str = ""
    sse_kms_key_id: str = ""
    storage_class: str = ""
    part_size: int = 5 * 1024 * 1024
    max_connections: int = 64
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 5


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Which driver stores the data, and its settings."""

    driver: Literal["filesystem", "inmemory", "s3"] = "filesystem"
    delete: bool = True
    read_only: bool = False
    filesystem: FilesystemConfig = field(default_factory=FilesystemConfig)
    s3: S3Config = field(default_factory=S3Config)


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Logging: `level` of the root logger, whether each request is logged, and how lines look
    ("text" for people, "json": one object per line for log shippers)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus metrics at `/metrics` on their own listener `addr` (host:port); empty: off."""

    addr: str = ""

    def __post_init__(self) -> None:
        if self.addr and not self.addr.rpartition(":")[2].isdigit():
            raise ConfigError(f"addr: {self.addr!r} is not host:port")

    @property
    def host(self) -> str:
        return self.addr.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.addr.rpartition(":")[2])


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """A webhook that receives registry events, with Distribution's delivery settings.

    After `threshold` failed attempts in a row, delivery waits `backoff` seconds
    between attempts. Empty filters let every event through; `repositories` are
    globs as in access rules.
    """

    name: str = ""
    url: str = ""
    headers: tuple[str, ...] = ()
    timeout: float = 5.0
    threshold: int = 3
    backoff: float = 10.0
    format: Literal["distribution", "cloudevents"] = "distribution"
    actions: tuple[Literal["push", "pull", "delete", "mount"], ...] = ()
    media_types: tuple[str, ...] = ()
    repositories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"url: {self.url!r} is not an http(s) URL")
        for header in self.headers:
            if not header.partition(":")[0].strip() or ":" not in header:
                raise ConfigError(f"headers: {header!r} is not 'Name: value'")
        if self.timeout <= 0 or self.backoff < 0 or self.threshold < 1:
            raise ConfigError("timeout must be positive, backoff >= 0 and threshold >= 1")


@dataclass(frozen=True, slots=True)
class NotificationsConfig:
    """Webhook endpoints that are told of pushes, pulls, deletes and mounts."""

    endpoints: tuple[EndpointConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class HtpasswdConfig:
    """The htpasswd file of users and bcrypt hashes (`htpasswd -B`)."""

    path: str = ""


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """Bearer tokens: who issues them, who they are for, and the keys that sign them."""

    realm: str = ""
    service: str = "cargobay"
    issuer: str = "cargobay"
    public_keys: tuple[str, ...] = ()
    jwks: str = ""
    signing_key: str = ""
    expiry_seconds: int = 300


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """A named set of users that access rules can refer to."""

    name: str = ""
    members: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("name: a group needs a name")


@dataclass(frozen=True, slots=True)
class AccessRule:
    """Grants `actions` on the repositories matching `repositories` to its principals.

    Principals are `users` ("*": every authenticated user), members of
    `groups`, and with `anonymous` every client, logged in or not.
    """

    repositories: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    anonymous: bool = False
    actions: tuple[Literal["pull", "push", "delete", "catalog"], ...] = ()

    def __post_init__(self) -> None:
        if not self.actions:
            raise ConfigError("actions: a rule must grant at least one action")
        if not (self.users or self.groups or self.anonymous):
            raise ConfigError("a rule needs users, groups or anonymous = true")
        if self.anonymous and set(self.actions) - {"pull", "catalog"}:
            # Anonymous writes would make the registry writable by anyone who can reach it.
            raise ConfigError("actions: anonymous rules may only grant pull and catalog")
        if set(self.actions) - {"catalog"} and not self.repositories:
            raise ConfigError("repositories: a rule granting pull, push or delete needs patterns")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Authentication mode and the access rules; mode "none" lets every client do everything."""

    mode: Literal["none", "htpasswd", "token"] = "none"
    htpasswd: HtpasswdConfig = field(default_factory=HtpasswdConfig)
    token: TokenConfig = field(default_factory=TokenConfig)
    groups: tuple[GroupConfig, ...] = ()
    access: tuple[AccessRule, ...] = ()

    def __post_init__(self) -> None:
        if self.mode == "none":
            if self.access:
                raise ConfigError("access rules have no effect with mode = 'none'")
            return
        if self.mode == "htpasswd" and not self.htpasswd.path:
            raise ConfigError("htpasswd.path is required with mode = 'htpasswd'")
        if self.mode == "token":
            token = self.token
            if not (token.public_keys or token.jwks or token.signing_key):
                raise ConfigError("token: public_keys, jwks or signing_key is required")
            if not token.signing_key and not token.realm:
                raise ConfigError("token.realm is required when another server issues tokens")
            if token.signing_key and not self.htpasswd.path:
                raise ConfigError("htpasswd.path is required to issue tokens (token.signing_key)")
            if token.expiry_seconds <= 0:
                raise ConfigError("token.expiry_seconds must be positive")
        known = {group.name for group in self.groups}
        for rule in self.access:
            for group in rule.groups:
                if group not in known:
                    raise ConfigError(f"access: unknown group {group!r}")


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Bounds on what one request or client may cost the registry; 0 turns an optional one off."""

    max_manifest_bytes: int = MAX_MANIFEST_SIZE
    max_blob_bytes: int = 0
    max_header_bytes: int = 8190
    upload_expiry_seconds: int = 7 * 24 * 3600
    rate_limit_per_second: float = 0.0
    rate_limit_burst: int = 100
    # A client sending a layer at 1 KiB/s still sends a byte a second: only a
    # stalled one goes a minute without.
    body_idle_timeout_seconds: float = 60.0
    max_concurrent_uploads: int = 512
    max_concurrent_uploads_per_client: int = 64

    def __post_init__(self) -> None:
        if not 0 < self.max_manifest_bytes <= MAX_MANIFEST_SIZE:
            raise ConfigError(f"max_manifest_bytes must be between 1 and {MAX_MANIFEST_SIZE}")
        if self.max_blob_bytes < 0 or self.upload_expiry_seconds < 0:
            raise ConfigError("max_blob_bytes and upload_expiry_seconds must not be negative")
        if self.max_header_bytes < 1024:
            raise ConfigError("max_header_bytes must be at least 1024")
        if self.rate_limit_per_second < 0 or self.rate_limit_burst < 1:
            raise ConfigError("rate_limit_per_second must be >= 0 and rate_limit_burst >= 1")
        if (
            self.body_idle_timeout_seconds < 0
            or self.max_concurrent_uploads < 0
            or self.max_concurrent_uploads_per_client < 0
        ):
            raise ConfigError(
                "body_idle_timeout_seconds, max_concurrent_uploads and "
                "max_concurrent_uploads_per_client must not be negative"
            )


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """How processes sharing one storage learn of each other's writes (the change feed).

    `interval_seconds`: how often the feed is read. `reconcile_seconds`: how
    often the whole index is compared with storage, to pick up writes that
    bypassed the feed (0 turns it off). `retention_seconds`: how long a record
    stays in the feed; a process that has not read the feed for longer
    reloads its index from storage.
    """

    interval_seconds: float = 1.0
    reconcile_seconds: float = 300.0
    retention_seconds: float = 600.0

    def __post_init__(self) -> None:
        if not 0.05 <= self.interval_seconds <= 60:
            raise ConfigError("feed.interval_seconds must be between 0.05 and 60")
        if self.reconcile_seconds < 0:
            raise ConfigError("feed.reconcile_seconds must be 0 (off) or more")
        if self.retention_seconds < 60 or self.retention_seconds < 10 * self.interval_seconds:
            raise ConfigError(
                "feed.retention_seconds must be at least 60 and 10 times interval_seconds"
            )


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """Which tags of the repositories matching `repositories` survive garbage collection.

    A tag is kept when any rule matching its repository keeps it: one of the
    `keep_last` most recently pushed, pulled within `keep_pulled_days`, pushed
    within `keep_pushed_days`, or matching a `keep_tags` glob. A rule setting
    none of those keeps every tag. `untagged_days` deletes manifests no tag
    reaches once unreached that long (by their revision's age); 0 never does.
    A manifest pulled by digest within `keep_pulled_days` is kept as a tag
    would keep it, with what it reaches.
    """

    repositories: tuple[str, ...] = ()
    keep_last: int = 0
    keep_pulled_days: float = 0.0
    keep_pushed_days: float = 0.0
    keep_tags: tuple[str, ...] = ()
    untagged_days: float = 0.0

    def __post_init__(self) -> None:
        if not self.repositories:
            raise ConfigError("repositories: a retention rule needs repository patterns")
        if min(self.keep_last, self.keep_pulled_days, self.keep_pushed_days) < 0:
            raise ConfigError("keep_last, keep_pulled_days and keep_pushed_days must be >= 0")
        if self.untagged_days < 0:
            raise ConfigError("untagged_days must be >= 0")

    @property
    def governs_tags(self) -> bool:
        """Whether this rule keeps only some tags (else it keeps them all)."""
        return bool(
            self.keep_last or self.keep_pulled_days or self.keep_pushed_days or self.keep_tags
        )


@dataclass(frozen=True, slots=True)
class GcConfig:
    """Garbage collection: `cargobay gc`, and the same run in `cargobay serve` every
    `interval_seconds` (0: never). Blobs younger than `grace_seconds` are never collected."""

    grace_seconds: float = 3600.0
    interval_seconds: float = 0.0
    delete_untagged: bool = False
    retention: tuple[RetentionRule, ...] = ()

    def __post_init__(self) -> None:
        if self.grace_seconds < 0 or self.interval_seconds < 0:
            raise ConfigError("grace_seconds and interval_seconds must not be negative")


@dataclass(frozen=True, slots=True)
class UiConfig:
    """The web page at `/ui/`: served by this process, with the API's users and rules."""

    enabled: bool = True


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One registry this one mirrors (pull-through cache), and how to reach it.

    Repositories named `<prefix>/...` are proxied to it; so are names sent with
    containerd's `?ns=<prefix>` (or `?ns=` the host of `url`), and, with
    `default`, names of no other route that are not local repositories
    (docker's `registry-mirrors`). `username` alone: Basic credentials, also
    used to get tokens when the upstream answers with a Bearer challenge.
    `retention_days` is garbage collection's default rule for its repositories
    (`registry.gc.retention.mirror_rules`); 0 keeps everything cached.
    """

    name: str = ""
    url: str = ""
    username: str = ""
    password: str = field(default="", repr=False)  # never printed or logged
    prefix: str = ""
    default: bool = False
    dockerhub_library: bool = False
    tag_ttl_seconds: int = 300
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retention_days: int = 30

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("name: an upstream needs a name")
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"url: {self.url!r} is not an http(s) URL")
        if not self.prefix or self.prefix.strip("/") != self.prefix:
            raise ConfigError("prefix: an upstream needs a prefix with no leading or trailing /")
        if self.tag_ttl_seconds < 0 or self.retention_days < 0:
            raise ConfigError("tag_ttl_seconds and retention_days must not be negative")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ConfigError("connect_timeout and read_timeout must be positive")


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """The pull-through cache: the upstream registries mirrored (none: a plain registry)."""

    upstreams: tuple[UpstreamConfig, ...] = ()

    def __post_init__(self) -> None:
        prefixes = [u.prefix for u in self.upstreams]
        for i, prefix in enumerate(prefixes):
            for other in prefixes[i + 1 :]:
                if (
                    prefix == other
                    or other.startswith(prefix + "/")
                    or (prefix.startswith(other + "/"))
                ):
                    raise ConfigError(f"upstreams: prefixes {prefix!r} and {other!r} overlap")
        if sum(u.default for u in self.upstreams) > 1:
            raise ConfigError("upstreams: at most one upstream may be the default")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration of one Cargobay process."""

    http: HttpConfig = field(default_factory=HttpConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    log: LogConfig = field(default_factory=LogConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    feed: FeedConfig = field(default_factory=FeedConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    gc: GcConfig = field(default_factory=GcConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)


T = TypeVar("T")


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from `path` (TOML, optional) and `environ` (default: os.environ).

    Raises `ConfigError` for an unreadable file, unknown keys or wrong types.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    _apply_environment(raw, os.environ if environ is None else environ)
    return _build(Config, raw, "")


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        node = raw
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(keys)} is not a section")
            node = child
        # Environment values are text; _coerce turns them into the field's type.
        node[keys[-1]] = _EnvText(value)


class _EnvText(str):
    """A value that came from the environment and may be converted from text."""


def _build(cls: type[T], raw: Any, where: str) -> T:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown configuration key {key!r}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"{where}.{name}" if where else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, key)  # type: ignore[arg-type]
        else:
            values[name] = _coerce(hint, value, key)
    try:
        return cls(**values)
    except ConfigError as e:  # a check across keys of this table: say which table
        raise ConfigError(f"{where}: {e}" if where else str(e)) from e


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = get_origin(hint)
    from_env = isinstance(value, _EnvText)
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise ConfigError(f"{key}: {value!r} is not one of {choices}")
        return str(value)
    if origin in (types.UnionType, typing.Union):
        raise ConfigError(f"{key}: unsupported type {hint}")
    if hint is bool:
        if from_env:
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        elif isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if from_env:
            try:
                return int(value)
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if from_env:
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is tuple:
        item_hint = get_args(hint)[0]
        tables = dataclasses.is_dataclass(item_hint)
        if from_env:
            if tables:
                raise ConfigError(f"{key}: a list of tables cannot be set from the environment")
            items: list[Any] = [_EnvText(item.strip()) for item in value.split(",") if item.strip()]
        elif isinstance(value, list):
            items = value
        else:
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if tables:  # [[section.key]] in TOML: a list of tables
            return tuple(_build(item_hint, item, f"{key}[{i}]") for i, item in enumerate(items))
        return tuple(_coerce(item_hint, item, f"{key}[{i}]") for i, item in enumerate(items))
    raise ConfigError(f"{key}: unsupported type {hint}")
