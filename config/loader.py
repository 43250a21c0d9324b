"""Load the configuration: defaults < YAML files < environment.

``load_config(path)`` reads a config directory (``hotline.yaml`` and ``queues.yaml``; a missing
file means that section's defaults), overlays ``HOTLINE_<SECTION>__<KEY>`` environment
variables and the agent tokens (``HOTLINE_AGENT_TOKENS=1001=tok,1002=tok`` or
``HOTLINE_AGENT_TOKENS_FILE``), validates everything at once and raises :class:`ConfigError`
listing every problem as ``file: key.path: reason``.

It reads files synchronously: call it before the event loop starts, or through
``asyncio.to_thread`` on a reload.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from config.errors import ConfigError, ConfigIssue
from config.schema import CROSS_CHECK, HotlineConfig

__all__ = ["ConfigError", "ConfigIssue", "DEFAULTS_DIR", "config_dir", "load_config"]

DEFAULTS_DIR = Path(__file__).resolve().parent / "defaults"
HOTLINE_FILE = "hotline.yaml"
QUEUES_FILE = "queues.yaml"
CHANNELS_FILE = "channels.yaml"
SLA_FILE = "sla.yaml"
UNITS_FILE = "units.yaml"
ROUTING_FILE = "routing.yaml"
ASR_FILE = "asr.yaml"
# Sections that have a file of their own; the file *is* the section (no top-level key).
OWN_SECTION_FILES = {"queues": QUEUES_FILE, "channels": CHANNELS_FILE, "sla": SLA_FILE,
                     "units": UNITS_FILE, "routing": ROUTING_FILE, "asr": ASR_FILE}
# Sections held by hotline.yaml; queues.yaml *is* the queues section (no top-level key).
HOTLINE_SECTIONS = ("service", "ami", "stats")
SECTION_FILE = {**{s: HOTLINE_FILE for s in HOTLINE_SECTIONS}, **OWN_SECTION_FILES}
OWN_FILES = tuple(OWN_SECTION_FILES.values())
ENV_TOKENS = "HOTLINE_AGENT_TOKENS"
ENV_TOKENS_FILE = "HOTLINE_AGENT_TOKENS_FILE"
ENV_APP_KEYS = "HOTLINE_APP_KEYS"
ENV_UNIT_TOKENS = "HOTLINE_UNIT_TOKENS"
ENV_CONFIG_DIR = "HOTLINE_CONFIG_DIR"
_ENV_KEY = re.compile(r"^HOTLINE_([A-Z0-9_]+?)__([A-Z0-9_]+(?:__[A-Z0-9_]+)*)$")
# Values of keys containing these words are never echoed in an error message.
_SECRET_WORDS = ("secret", "token", "password", "database_url", "url")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and keeps ``0123`` a string.

    PyYAML silently keeps the last of two equal keys (a seat listed twice under one key would
    vanish), and YAML 1.1 reads ``0123`` as octal 83: an extension must never change like that.
    """


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None,
                f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})", mark)
        seen[key] = key_node
    return loader.construct_mapping(node)


def _construct_int(loader: _StrictLoader, node: yaml.ScalarNode) -> int | str:
    text = loader.construct_scalar(node)
    if isinstance(text, str) and len(text) > 1 and text.startswith("0") and text.isdigit():
        return text
    return loader.construct_yaml_int(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """The config directory to use: ``$HOTLINE_CONFIG_DIR``, else the packaged defaults."""
    env = os.environ if env is None else env
    value = env.get(ENV_CONFIG_DIR)
    return Path(value) if value else DEFAULTS_DIR


def _read_yaml(path: Path, issues: list[ConfigIssue]) -> dict[str, Any]:
    """The mapping in ``path`` ({} if the file is absent or empty); problems go to ``issues``."""
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        issues.append(ConfigIssue(name, "", f"cannot read the file: {exc}"))
        return {}
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = "; ".join(p for p in (exc.context, exc.problem) if p)
        issues.append(ConfigIssue(name, "", f"YAML syntax error at {where}{what}"))
        return {}
    except yaml.YAMLError as exc:
        issues.append(ConfigIssue(name, "", f"YAML syntax error: {exc}"))
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        issues.append(ConfigIssue(name, "", "must be a mapping of keys, "
                                  f"not {type(data).__name__}"))
        return {}
    return data


def _parse_tokens(text: str, source: str, separator: str,
                  issues: list[ConfigIssue]) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for number, entry in enumerate(text.split(separator), start=1):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        extension, sep, token = entry.partition("=")
        if not sep or not extension.strip() or not token.strip():
            # Never echo the entry: it may be a token with the '=' forgotten.
            issues.append(ConfigIssue(source, f"entry {number}", "must be name=secret (1001=token, app-id=key)"))
            continue
        tokens[extension.strip()] = token.strip()
    return tokens


def _env_overlay(env: Mapping[str, str], data: dict[str, Any],
                 origin: dict[tuple[str, ...], str], issues: list[ConfigIssue]) -> None:
    """Apply ``HOTLINE_<SECTION>__<KEY>`` variables onto ``data``; remember where they came from."""
    for var in sorted(env):
        match = _ENV_KEY.match(var)
        if not match:
            continue
        section = match.group(1).lower()
        keys = tuple(k.lower() for k in match.group(2).split("__"))
        if section not in SECTION_FILE:
            issues.append(ConfigIssue("env", var, "unknown section "
                                      f"{section!r} (known: {', '.join(sorted(SECTION_FILE))})"))
            continue
        raw = env[var]
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                issues.append(ConfigIssue("env", var, f"not valid JSON: {exc.msg}"))
                continue
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            continue  # the file's own value for the section is reported as wrong already
        for key in keys[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        target[keys[-1]] = value
        origin[(section, *keys)] = var


def _agent_tokens(env: Mapping[str, str], data: dict[str, Any],
                  origin: dict[tuple[str, ...], str], issues: list[ConfigIssue]) -> None:
    tokens: dict[str, str] = {}
    token_file = env.get(ENV_TOKENS_FILE)
    if token_file:
        try:
            text = Path(token_file).read_text(encoding="utf-8")
        except OSError as exc:
            issues.append(ConfigIssue("env", ENV_TOKENS_FILE, f"cannot read {token_file}: "
                                      f"{exc.strerror or exc}"))
        else:
            tokens.update(_parse_tokens(text, token_file, "\n", issues))
    if env.get(ENV_TOKENS):
        tokens.update(_parse_tokens(env[ENV_TOKENS], f"env: {ENV_TOKENS}", ",", issues))
    if tokens:
        service = data.setdefault("service", {})
        merged = dict(service.get("agent_tokens") or {})
        merged.update(tokens)
        service["agent_tokens"] = merged
        for extension in tokens:
            origin[("service", "agent_tokens", extension)] = ENV_TOKENS


def _app_keys(env: Mapping[str, str], data: dict[str, Any],
              origin: dict[tuple[str, ...], str], issues: list[ConfigIssue]) -> None:
    """``HOTLINE_APP_KEYS="app-id=key,..."``: the mobile apps' HMAC keys, kept out of files."""
    if not env.get(ENV_APP_KEYS):
        return
    keys = _parse_tokens(env[ENV_APP_KEYS], f"env: {ENV_APP_KEYS}", ",", issues)
    app = data.setdefault("channels", {}).setdefault("app", {})
    clients = dict(app.get("clients") or {})
    for app_id, key in keys.items():
        client = dict(clients.get(app_id) or {})
        client["secret"] = key
        clients[app_id] = client
        origin[("channels", "app", "clients", app_id)] = ENV_APP_KEYS
    app["clients"] = clients


def _unit_tokens(env: Mapping[str, str], data: dict[str, Any],
                 origin: dict[tuple[str, ...], str], issues: list[ConfigIssue]) -> None:
    """``HOTLINE_UNIT_TOKENS="city.water=token,..."``: the units' ticket-API tokens."""
    if not env.get(ENV_UNIT_TOKENS):
        return
    tokens = _parse_tokens(env[ENV_UNIT_TOKENS], f"env: {ENV_UNIT_TOKENS}", ",", issues)
    routing = data.setdefault("routing", {})
    merged = dict(routing.get("unit_tokens") or {})
    merged.update(tokens)
    routing["unit_tokens"] = merged
    for unit_id in tokens:
        origin[("routing", "unit_tokens", unit_id)] = ENV_UNIT_TOKENS


def _format_loc(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        else:
            out += f".{part}" if out else str(part)
    return out


def _join(base: str, rel: str) -> str:
    if not base:
        return rel
    if not rel:
        return base
    return base + rel if rel.startswith("[") else f"{base}.{rel}"


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model a location points into (to suggest the right key for a typo)."""
    model: type[BaseModel] = HotlineConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        found = _find_model(field.annotation)
        if found is None:
            return None
        model = found
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


def _reason(error: ErrorDetails, secret: bool) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        known = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (
            f" (known keys: {', '.join(known)})" if known else "")
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    message = error["msg"]
    if kind.startswith("value_error"):
        message = message.removeprefix("Value error, ")
    value = error.get("input")
    if not secret and isinstance(value, str | int | float | bool) and len(repr(value)) <= 60:
        message += f" (got {value!r})"
    return message


def _issues_from(exc: ValidationError, origin: Mapping[tuple[str, ...], str]) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        section = str(loc[0]) if loc else ""
        file = SECTION_FILE.get(section, HOTLINE_FILE)
        # A file of its own is its section: key paths start below it.
        inner = loc[1:] if file in OWN_FILES else loc
        base = _format_loc(inner)
        secret = any(w in str(p) for p in loc for w in _SECRET_WORDS)
        str_loc = tuple(str(p) for p in loc)
        var = next((v for k, v in origin.items() if str_loc[:len(k)] == k), None)
        if error["type"] == CROSS_CHECK:
            ctx = error.get("ctx") or {}
            for rel, reason in ctx.get("issues", ()):
                if not loc:
                    # A check across sections names its own section first ("routing.x").
                    section, _, rest = rel.partition(".")
                    own = SECTION_FILE.get(section, HOTLINE_FILE)
                    issues.append(ConfigIssue(own, rest if own in OWN_FILES else rel, reason))
                    continue
                issues.append(ConfigIssue(file, _join(base, rel), reason))
        elif var is not None:
            issues.append(ConfigIssue("env", var, f"{_format_loc(loc)}: {_reason(error, secret)}"))
        else:
            issues.append(ConfigIssue(file, base, _reason(error, secret)))
    return issues


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> HotlineConfig:
    """Load and validate the configuration in directory ``path``.

    ``path=None`` uses :func:`config_dir`; ``env=None`` reads ``os.environ``. Raises
    :class:`ConfigError` listing every problem (file, key path, reason).
    """
    env = os.environ if env is None else env
    directory = config_dir(env) if path is None else Path(path)
    issues: list[ConfigIssue] = []
    if not directory.is_dir():
        raise ConfigError([ConfigIssue(str(directory), "", "config directory not found")])
    data: dict[str, Any] = {}
    hotline = _read_yaml(directory / HOTLINE_FILE, issues)
    for key, value in hotline.items():
        if key in HOTLINE_SECTIONS:
            data[key] = {} if value is None else value
        else:
            close = difflib.get_close_matches(str(key), HOTLINE_SECTIONS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else (
                f" (known: {', '.join(HOTLINE_SECTIONS)})")
            issues.append(ConfigIssue(HOTLINE_FILE, str(key), f"unknown section{hint}"))
    for section, file in OWN_SECTION_FILES.items():
        data[section] = _read_yaml(directory / file, issues)
    origin: dict[tuple[str, ...], str] = {}
    _env_overlay(env, data, origin, issues)
    _agent_tokens(env, data, origin, issues)
    _app_keys(env, data, origin, issues)
    _unit_tokens(env, data, origin, issues)
    try:
        config = HotlineConfig.model_validate(data)
    except ValidationError as exc:
        issues.extend(_issues_from(exc, origin))
        raise ConfigError(issues) from None
    if issues:
        raise ConfigError(issues)
    return config
