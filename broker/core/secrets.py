"""Secrets in contracts: written as `${VAR}`, resolved only where a trigger is sent,
and never shown back.

A contract's trigger fields may say `Authorization: "Bearer ${HOOK_TOKEN}"` (or
`${VAR:-default}`). The contract keeps the text as written, so the API, the status
page, `baton diff` and `baton explain` show `${HOOK_TOKEN}`, never its value; the
dispatcher resolves it just before rendering. Contracts may read only the variables
the config names in `contract_env` (globs): a contract author should not be able to
send the worker's own credentials to a URL of their choosing. `baton check` refuses a
variable that is not allowed or not set, and a secret-looking header (Authorization,
a token, a key, a password) written as a plain value instead of `${VAR}`.

Values a contract received are also scrubbed from anything Baton stores or logs about
a dispatch (a target's error message that echoes a header, say): `Redactor`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from fnmatch import fnmatchcase
from typing import Any

# ${VAR} or ${VAR:-default}, as in a shell.
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
REDACTED = "<redacted>"
# Header (or field) names whose values are credentials, wherever they appear.
_SENSITIVE = re.compile(
    r"(^|[-_])(authorization|cookie|token|secret|password|passwd|api[-_]?key|auth)([-_]|$)",
    re.IGNORECASE,
)
_TEMPLATE = ("{{", "{%", "{#")


def is_sensitive(name: str) -> bool:
    return bool(_SENSITIVE.search(name)) or name.lower() in ("x-api-key", "proxy-authorization")


def references(value: Any, path: str = "") -> Iterator[tuple[str, str, str | None]]:
    """(path, variable, default) for each `${VAR}` in the string leaves of `value`."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from references(v, f"{path}.{k}".lstrip("."))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from references(v, f"{path}[{i}]")
    elif isinstance(value, str):
        for match in VAR.finditer(value):
            yield path, match.group(1), match.group(2)


def _written_out(name: object, value: object) -> bool:
    """A credential-named field whose value is written in the file, not `${VAR}`."""
    return (
        isinstance(value, str)
        and bool(value)
        and is_sensitive(str(name))
        and (not VAR.search(value))
    )


def literal_secrets(value: Any, path: str = "") -> Iterator[str]:
    """Paths of credential-named fields whose value is written out, not `${VAR}`."""
    if isinstance(value, dict):
        for k, v in value.items():
            where = f"{path}.{k}".lstrip(".")
            if _written_out(k, v):
                yield where
            else:
                yield from literal_secrets(v, where)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from literal_secrets(v, f"{path}[{i}]")


def allowed(name: str, globs: Iterable[str]) -> bool:
    return any(fnmatchcase(name, g) for g in globs)


def allowed_env(globs: Iterable[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The variables contracts may read, of those set."""
    patterns = list(globs)
    return {k: v for k, v in environ.items() if allowed(k, patterns)} if patterns else {}


def resolve(value: Any, env: Mapping[str, str]) -> Any:
    """`value` with each `${VAR}` replaced from `env` (the allowed variables only). In
    a string that is also a template, the value is kept out of Jinja's reach (`raw`),
    so a secret holding `{{` is text, not a template."""
    if isinstance(value, dict):
        return {k: resolve(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, env) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    templated = any(mark in VAR.sub("", value) for mark in _TEMPLATE)

    def sub(match: re.Match[str]) -> str:
        found = env.get(match.group(1), match.group(2))
        if found is None:
            raise KeyError(match.group(1))
        return "{% raw %}" + found + "{% endraw %}" if templated else found

    return VAR.sub(sub, value)


def redact(value: Any) -> Any:
    """A definition to show: credential-named values written out (not `${VAR}`) masked."""
    if isinstance(value, dict):
        return {k: REDACTED if _written_out(k, v) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class Redactor:
    """Scrubs the secret values contracts may use from text Baton stores or logs."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole; short values
        # (a flag, a port) would mask ordinary words, so they are left alone.
        self.values = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text
