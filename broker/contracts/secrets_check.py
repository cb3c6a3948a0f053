"""What `baton check` (and every load) says about secrets in contracts: each `${VAR}` a
trigger uses must be one the config allows (`contract_env`) and must be set; a
credential-named field must not be written out in the file (see broker.core.secrets)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from broker.contracts.loader import ContractSet, LoadedContract
from broker.core.errors import ContractError
from broker.core.secrets import allowed, literal_secrets, references


def secret_problems(
    contract_set: ContractSet, allow: Iterable[str], env: Mapping[str, str]
) -> list[ContractError]:
    globs = list(allow)
    errors = []
    for loaded in contract_set.contracts:
        errors += _problems(loaded, globs, env)
    return errors


def _problems(
    loaded: LoadedContract, globs: list[str], env: Mapping[str, str]
) -> list[ContractError]:
    fields = loaded.contract.trigger.fields()
    errors = []
    for path, name, default in references(fields):
        where = loaded.at("trigger", *_parts(path))
        if not allowed(name, globs):
            shown = ", ".join(globs) or "none"
            errors.append(ContractError(where, f"trigger.{path}: ${{{name}}}: contracts may "
                                               f"read only the environment variables "
                                               f"contract_env allows ({shown})"))  # fmt: skip
        elif name not in env and default is None:
            errors.append(ContractError(where, f"trigger.{path}: environment variable "
                                               f"{name} is not set"))  # fmt: skip
    for path in literal_secrets(fields):
        message = (f"trigger.{path}: looks like a credential written in the file; give it "
                   "as ${VAR} (and allow VAR in contract_env)")  # fmt: skip
        errors.append(ContractError(loaded.at("trigger", *_parts(path)), message))
    return errors


def _parts(path: str) -> list[str | int]:
    """`headers.Authorization` / `body.rows[2]` -> the loader's path parts."""
    out: list[str | int] = []
    for piece in path.replace("[", ".[").split("."):
        if piece.startswith("[") and piece.endswith("]") and piece[1:-1].isdigit():
            out.append(int(piece[1:-1]))
        elif piece:
            out.append(piece)
    return out
