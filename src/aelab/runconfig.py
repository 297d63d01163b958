"""Run configs: a command's options kept in a TOML file, each option a key of the same name.

``code_size = 16`` in the file means ``--code-size 16``; a flag is ``true``
or ``false``; a list of widths is ``[128, 64]``. The file's options are read
as if given first on the command line, so the command line overrides them and
every value is checked exactly as the command line's are.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from .errors import OptionError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

RUN_CONFIG_FILE = "run.toml"  # the resolved options of `aelab train`, beside its checkpoint
# options that say what to do with the config, never stored in it
NOT_KEPT = ("config", "print_config", "help")
# what to do this once, not a setting of the run: a config may say it, run.toml never repeats it (an
# `overwrite = true` saved there replaced whatever model a later --config --out pointed to)
THIS_RUN_ONLY = ("overwrite", "resume", "quiet")
MAX_CONFIG_BYTES = 1 << 20  # a run config is a few lines; anything this large is not one
MAX_SEED = 2**32 - 1  # the largest seed: scikit-learn's random_state takes no more, and torch's generators,
                      # seeded with multiples of it, stay within 64 bits


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The keys of a TOML run config (a flat table of options)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_CONFIG_BYTES:  # checked first: parsing hundreds of megabytes takes minutes
                raise OptionError(f"the config file is {size:,} bytes, too large for a run config "
                                  f"(at most {MAX_CONFIG_BYTES:,})", path=p,
                                  hint="pass a run.toml of `key = value` lines, as aelab train writes")
            config = tomllib.load(f)
    except FileNotFoundError:
        raise OptionError("config file not found", path=p, hint="check the path") from None
    except OSError as e:
        raise OptionError(f"cannot read the config file: {e.strerror or e}", path=p) from e
    except tomllib.TOMLDecodeError as e:
        raise OptionError(f"not a valid TOML file ({e})", path=p, hint="keys as `code_size = 16`, one per line") from e
    except UnicodeDecodeError:  # TOML is UTF-8; some Windows editors save UTF-16
        raise OptionError("the config file is not UTF-8 text", path=p,
                          hint="save it as UTF-8, the encoding TOML files use, then pass it again") from None
    nested = [k for k, v in config.items() if isinstance(v, dict)]
    if nested:
        raise OptionError(f"the config file has tables ({', '.join(nested)}); expected plain `key = value` lines",
                          path=p, hint="write each option at the top level, e.g. code_size = 16")
    return config


def config_arguments(parser: argparse.ArgumentParser, config: dict[str, Any], given: list[str],
                     path: str | os.PathLike) -> list[str]:
    """``config`` as command-line arguments for ``parser``, leaving out the options that ``given``
    (the actual command line) sets itself, or sets through another option of the same group."""
    actions = config_keys(parser)
    by_option = {option: a for a in parser._actions for option in a.option_strings}
    set_on_line = {by_option[arg.split("=")[0]].dest for arg in given if arg.split("=")[0] in by_option}
    exclusive = {a.dest: {b.dest for b in group._group_actions}
                 for group in parser._mutually_exclusive_groups for a in group._group_actions}
    arguments: list[str] = []
    for key, value in config.items():
        dest = key.replace("-", "_")
        action = _action_for(actions, dest, key, value, path)
        if set_on_line & exclusive.get(action.dest, {action.dest}):
            continue  # the command line wins
        arguments += _as_arguments(action, key, value, path)
    return arguments


def check_arguments(parser: argparse.ArgumentParser, arguments: list[str], path: str | os.PathLike) -> None:
    """Parse a config file's ``arguments`` alone, so that a bad value is an error naming the file
    (one line) rather than argparse's usage text."""
    def refuse(message: str):
        raise OptionError(f"{message}, in the config file", path=path, hint="fix the value in the file")
    original = parser.error
    parser.error = refuse
    try:
        parser.parse_args(arguments)
    finally:
        parser.error = original


def config_keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The keys a run config for ``parser`` may hold, each with its option: every long option's name
    (``code_size`` for ``--code-size``, ``grayscale`` for ``--grayscale``), less hidden and NOT_KEPT ones."""
    keys = {}
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or action.dest in NOT_KEPT:
            continue
        for option in action.option_strings:
            if option.startswith("--"):
                keys.setdefault(option[2:].replace("-", "_"), action)
    return keys


def _action_for(actions: dict[str, argparse.Action], dest: str, key: str, value: Any,
                path: str | os.PathLike) -> argparse.Action:
    if dest not in actions:
        raise OptionError(f"unknown option {key!r} in the config file", path=path,
                          hint=f"use keys named as the command's options: {', '.join(sorted(actions))}")
    return actions[dest]


def _as_arguments(action: argparse.Action, key: str, value: Any, path: str | os.PathLike) -> list[str]:
    option = next((o for o in action.option_strings if o.startswith("--") and
                   o[2:].replace("-", "_") == key.replace("-", "_")), action.option_strings[-1])
    if action.nargs == 0:  # a flag
        if not isinstance(value, bool):
            raise OptionError(f"{key} is a flag: write {key} = true or false, not {value!r}", path=path)
        return [option] if value else []
    if isinstance(value, bool) or isinstance(value, dict):
        raise OptionError(f"{key} takes a value, got {value!r}", path=path, hint=f"e.g. {key} = ...")
    if isinstance(value, list):
        text = ",".join(str(v) for v in value) if value else "none"
    else:
        text = str(value)
    return [f"{option}={text}"]


def resolved_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """Every option of ``parser`` as ``args`` resolved it, keyed as a run config names it (an option
    chosen by a flag, such as ``--rgb``, as that flag: ``rgb = true``)."""
    options: dict[str, Any] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in NOT_KEPT or action.help == argparse.SUPPRESS:
            continue
        value = getattr(args, action.dest, None)
        takes_value = any(a.dest == action.dest and a.nargs != 0 for a in parser._actions if a.option_strings)
        if action.nargs != 0 or (takes_value and action.dest not in options):
            if takes_value and action.nargs == 0:
                continue  # --fast/--slow: the value goes under the option that takes one (--sweeps)
            options[action.dest] = value
        elif isinstance(action, argparse._StoreConstAction) and not isinstance(action.const, bool):
            if value == action.const:
                options[action.option_strings[-1].lstrip("-").replace("-", "_")] = True
        else:
            options[action.dest] = bool(value)
    return options


def with_data_located(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``data`` as an absolute path where it names a file or folder found from here (each
    of the two CTF files of ``TRAIN,TEST`` too): a saved run config then repeats the run on the same data
    from any folder. Anything else (the bundled MNIST's name, a path not found) stays as given."""
    data = options.get("data")
    if not isinstance(data, str) or not data:
        return options
    if os.path.exists(data):
        return {**options, "data": os.path.abspath(data)}
    parts = data.split(",")
    if len(parts) == 2 and all(part and os.path.exists(part) for part in parts):
        return {**options, "data": ",".join(os.path.abspath(part) for part in parts)}
    return options


def to_toml(options: dict[str, Any]) -> str:
    """Resolved options as a TOML run config (None values left out: they mean "the default"; so are
    :data:`THIS_RUN_ONLY`'s)."""
    lines = []
    for key, value in options.items():
        if key in NOT_KEPT or key in THIS_RUN_ONLY or value is None:
            continue
        if isinstance(value, tuple):
            value = list(value)
        lines.append(f"{key} = {json.dumps(value)}")  # JSON's strings, numbers, booleans and lists are TOML's
    return "\n".join(lines) + "\n"


def with_settings(text: str, settings: dict[str, Any]) -> str:
    """A run config (TOML ``text``) with ``settings`` written into it: the values of keys it has replaced,
    the others (not None) added at the end."""
    options = tomllib.loads(text)
    options.update({k: v for k, v in settings.items() if v is not None})
    return to_toml(options)


DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_HINT = "use seconds, minutes or hours: 90s, 10m, 1h"


def parse_duration(text: str | float) -> float:
    """Seconds from ``90``, ``90s``, ``10m`` or ``1.5h``, more than 0 and finite (a time budget); an
    unreadable, zero, negative or infinite duration is an OptionError."""
    seconds = _duration_seconds(text)
    if seconds is None:
        raise OptionError(f"cannot read the duration {text!r}", hint=DURATION_HINT)
    if not seconds > 0:
        raise OptionError(f"the budget must be a positive duration, got {text!r}", hint=DURATION_HINT)
    if not math.isfinite(seconds):
        raise OptionError(f"the budget must be a finite duration, got {text!r}", hint=DURATION_HINT)
    return seconds


def _duration_seconds(text: str | float) -> float | None:
    """The seconds ``text`` says (maybe 0, negative or infinite); None where it is no number of seconds,
    minutes or hours."""
    raw = str(text).strip().lower()
    unit = DURATION_UNITS.get(raw[-1:], None)
    number = raw[:-1] if unit is not None else raw
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        return None
    return None if math.isnan(seconds) else seconds
