r"""`--config FILE.toml` for every `sqdiff` subcommand, and the resolved configuration written
next to every output (`OUT.config.toml`).

A configuration file holds options by name: in a table named after the command (keys must be
options of that command), or at the top level (shared: applied to every command that has the
option; a key no command has is an error). The table wins over the top level:

    L = 16            # --L 16
    kappa = 0.21
    step-size = 0.1   # or step_size
    quiet = true      # a switch
    param = ["mu2=1.0"]  # a repeatable option: a list

    [generate]
    theory = "phi4"   # positional arguments by name, too
    n = 500

Precedence: the command line, then the file, then the defaults. Every value goes through the
same check as on the command line (a count must be a positive integer, …), and an unknown key
is an error that lists the known ones. `OUT.config.toml` is such a file with every resolved
option: `sqdiff generate --config ens.npz.config.toml` reruns the command.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import tomllib
from typing import Any

from ._version import __version__

__all__ = ["apply_config", "config_path", "is_resolved_config", "prepare_resolved"]

_NOT_SAVED = {"command", "config", "debug"}


def config_path(argv: list[str]) -> str | None:
    """The value of `--config` in `argv`, if any (before parsing: it changes the parser)."""
    for i, a in enumerate(argv):
        if a == "--config":
            if i + 1 == len(argv):
                raise ValueError("--config needs a FILE.toml.")
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"--config: no file {path!r}.") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"--config {path!r} is not valid TOML: {e}") from None


def _convert(action: argparse.Action, key: str, value: Any, path: str):
    """`value` checked and converted as the command line would (same `type`, `choices`)."""
    where = f"--config {path!r}: {key}"
    switches = argparse._StoreTrueAction | argparse._StoreFalseAction
    if isinstance(action, switches | argparse.BooleanOptionalAction):
        if not isinstance(value, bool):
            raise ValueError(f"{where} is a switch: true or false, got {value!r}.")
        return value  # the option's value, as OUT.config.toml records it
    if isinstance(action, argparse._AppendAction):
        if not isinstance(value, list):
            raise ValueError(f"{where} is repeatable: give a list, got {value!r}.")
        return [_scalar(action, where, v) for v in value]
    return _scalar(action, where, value)


def _scalar(action: argparse.Action, where: str, value: Any):
    if isinstance(value, dict | list) or isinstance(value, bool):
        raise ValueError(f"{where} must be a single number or string, got {value!r}.")
    text = value if isinstance(value, str) else repr(value)
    try:
        out = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None
    if action.choices is not None and out not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ValueError(f"{where} must be one of {choices}, got {out!r}.")
    return out


def _dests(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options a file may set: not --help, --config, nor a renamed (hidden) option."""
    return {
        a.dest: a
        for a in parser._actions
        if a.dest not in ("help", "config") and a.help is not argparse.SUPPRESS
    }


def apply_config(commands: dict[str, argparse.ArgumentParser], command: str, path: str) -> None:
    """Make the options in `path` the defaults of `commands[command]` (the command line still
    overrides them); options given there are no longer required on the command line.

    Keys of the `[command]` table must be options of that command. Top-level keys are shared:
    they apply to every command that has the option, and must be an option of some command
    (a typo is an error, never ignored)."""
    data = _read(path)
    tables = [k for k, v in data.items() if isinstance(v, dict) and k not in commands]
    if tables:
        raise ValueError(f"--config {path!r}: [{tables[0]}] is not a sqdiff command "
                         f"({', '.join(commands)}).")  # fmt: skip
    shared = {k: v for k, v in data.items() if not isinstance(v, dict)}
    section = data.get(command, {})
    actions = _dests(commands[command])
    every = {d for p in commands.values() for d in _dests(p)}
    for key in section:
        if key.replace("-", "_") not in actions:
            known = ", ".join(sorted(d.replace("_", "-") for d in actions))
            raise ValueError(f"--config {path!r}: {command} has no option {key!r} "
                             f"(known: {known}).")  # fmt: skip
    for key in shared:
        if key.replace("-", "_") not in every:
            raise ValueError(f"--config {path!r}: no sqdiff command has an option {key!r}.")
    values = {k: v for k, v in shared.items() if k.replace("-", "_") in actions}
    values.update(section)
    for key, value in values.items():
        action = actions[key.replace("-", "_")]
        action.default = _convert(action, key, value, path)
        action.required = False
        if not action.option_strings:  # a positional given in the file: optional on the line
            action.nargs = "?"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


_HEADER = "# sqdiff {version}: resolved configuration of `sqdiff {command}`"


def resolved_path(out: str) -> str:
    """Where the resolved configuration of a run writing `out` goes: `OUT.config.toml`."""
    return os.fspath(out).rstrip("/") + ".config.toml"


def is_resolved_config(path: str) -> bool:
    """Whether `path` is a resolved configuration sqdiff wrote (its first line)."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(200)
    except OSError:
        return False
    return first.startswith(b"# sqdiff ") and b": resolved configuration of `sqdiff " in first


def prepare_resolved(args: argparse.Namespace, out: str, *, force: bool = False):
    """Before the compute: check `OUT.config.toml` like any output (`sqdiff.io.check_output`:
    a user's file, a symlink, a folder or a FIFO there is refused) and write it in full to a
    temporary file beside it; the caller commits it once `out` is written, or discards it.
    Every resolved option of this run is recorded (None = unset is left out), readable again
    with `--config`."""
    from .io import PendingWrite, check_output

    path = resolved_path(out)
    check_output(path, force=force, what="resolved configuration", owned=is_resolved_config)
    lines = [
        _HEADER.format(version=__version__, command=args.command),
        f"# rerun: sqdiff {args.command} --config {os.path.basename(path)}",
        "",
        f"[{args.command}]",
    ]
    for key, value in sorted(vars(args).items()):
        if key in _NOT_SAVED or value is None:
            continue
        lines.append(f"{key.replace('_', '-')} = {_toml_value(value)}")
    text = "\n".join(lines) + "\n"
    tomllib.load(io.BytesIO(text.encode()))  # what we write must read back
    return PendingWrite(path, lambda fh: fh.write(text.encode()))
