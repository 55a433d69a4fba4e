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
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

ENV_PREFIX = "CARGOBAY_"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and the problem."""


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The listening socket."""

    addr: str = "127.0.0.1:5000"

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
    secret_key: str = ""
    path_style: bool = False
    verify_tls: bool = True
    redirect: bool = False
    redirect_expiry_seconds: int = 1200
    server_side_encryption: str = ""
    sse_kms_key_id: str = ""
    storage_class: str = ""
    part_size: int = 16 * 1024 * 1024
    max_connections: int = 64
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 5


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Which driver stores the data, and its settings."""

    driver: Literal["filesystem", "inmemory", "s3"] = "filesystem"
    delete: bool = True
    filesystem: FilesystemConfig = field(default_factory=FilesystemConfig)
    s3: S3Config = field(default_factory=S3Config)


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Logging: `level` of the root logger, and whether each request is logged."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration of one Cargobay process."""

    http: HttpConfig = field(default_factory=HttpConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    log: LogConfig = field(default_factory=LogConfig)


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
    return cls(**values)


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
        if from_env:
            return tuple(item.strip() for item in value.split(",") if item.strip())
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {hint}")
