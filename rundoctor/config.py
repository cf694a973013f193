"""The configuration file: one TOML file, one section per package, read by the command lines.

Precedence, highest first: a command-line flag, an environment variable, this file, the
default. Only the command lines call :func:`file_settings` (they pass the environment in);
library code takes the typed, frozen config objects they build.

Location: ``$RUNDOCTOR_CONFIG`` when set (the file must exist), else
``$XDG_CONFIG_HOME/rundoctor/config.toml`` (``~/.config/rundoctor/config.toml``) when it exists;
no file is no settings (a location the permissions keep from being looked at is a
:class:`ConfigError`: the file may be there). Format (TOML, read with :mod:`tomllib`)::

    [doctor]                       # fields of doctor.DoctorConfig
    roots = ["/srv/kilroy/runs"]
    idle_gap_s = 3600
    stale_lease_s = 600

    [executor]                     # fields of executor.ExecutorConfig
    agent_command = ["python", "-m", "fixtures.fake_agent", "{prompt_file}"]
    lease_ttl_s = 120.0
    self_fence_s = 90.0

Keys are the config objects' field names, with their types (a number for ``float`` fields,
a list of strings for tuples, a string for paths). An unknown section or key, a value of the
wrong type or a file that is not TOML is a :class:`ConfigError` naming the file, the key and
what was expected.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from rundoctor.paths import expand_user, read_regular_text

__all__ = ["SECTIONS", "ConfigError", "config_path", "file_settings"]

#: The sections a config file may have.
SECTIONS = ("doctor", "executor")


class ConfigError(ValueError):
    """The config file cannot be used; the message names the file, the key and the fix."""


def config_path(environ: Mapping[str, str]) -> Path | None:
    """The config file to read, or None when there is none.

    >>> config_path({"RUNDOCTOR_CONFIG": "/etc/rundoctor.toml"})
    PosixPath('/etc/rundoctor.toml')
    >>> config_path({"XDG_CONFIG_HOME": "/nonexistent"}) is None
    True
    """
    explicit = environ.get("RUNDOCTOR_CONFIG")
    if explicit:
        return expand_user(explicit)
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    found = expand_user(base) / "rundoctor" / "config.toml"
    try:
        return found if stat.S_ISREG(os.stat(found).st_mode) else None
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # a home the permissions hide (`sudo -u` keeps HOME), a long name
        if exc.errno == errno.ELOOP:
            return None  # as Path.is_file, which said no
        raise ConfigError(
            f"config file {str(found)!r} cannot be looked for ({exc.strerror or exc}); fix "
            "the permissions on its directories, or set XDG_CONFIG_HOME (or RUNDOCTOR_CONFIG) "
            "to where your config file is"
        ) from None


#: The largest config file read (1 MiB): it holds a few defaults, and a larger file (a disk
#: image named by mistake) was read whole, twice its size in memory, before being refused.
MAX_CONFIG_BYTES = 1024 * 1024


def _read(path: Path) -> dict[str, Any]:
    try:  # a FIFO is refused, not waited on forever
        data = tomllib.loads(read_regular_text(path, max_bytes=MAX_CONFIG_BYTES))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text: {exc}") from None
    except FileNotFoundError:
        raise ConfigError(
            f"config file {str(path)!r} does not exist; create it or unset RUNDOCTOR_CONFIG"
        ) from None
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise ConfigError(
                f"config file {str(path)!r} is larger than 1 MiB: no config file, which holds a "
                "few defaults; point RUNDOCTOR_CONFIG at the right file"
            ) from None
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per nested array or inline table
        raise ConfigError(
            f"config file {str(path)!r} is not a config file: values nested too deeply"
        ) from None
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"config file {str(path)!r}: unknown section [{unknown[0]}]; expected "
            + " or ".join(f"[{s}]" for s in SECTIONS)
        )
    return data


def file_settings(
    environ: Mapping[str, str],
    section: str,
    config_type: type[Any],
    *,
    exclude: Collection[str] = (),
) -> dict[str, Any]:
    """The fields of ``config_type`` (a dataclass) that the config file's ``[section]`` sets,
    typed; ``exclude`` names fields the file may not set.

    >>> import tempfile
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Cfg:
    ...     idle_gap_s: float = 7200.0
    ...     db: str | None = None
    >>> path = Path(tempfile.mkdtemp()) / "config.toml"
    >>> _ = path.write_text("[doctor]\\nidle_gap_s = 60\\n")
    >>> file_settings({"RUNDOCTOR_CONFIG": str(path)}, "doctor", Cfg)
    {'idle_gap_s': 60.0}
    """
    path = config_path(environ)
    if path is None:
        return {}
    raw = _read(path).get(section, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r}: [{section}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(config_type) if f.name not in exclude}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(
                f"config file {str(path)!r}: unknown key {key!r} in [{section}]; expected one "
                f"of {', '.join(sorted(fields))}"
            )
        annotation = str(fields[key].type)
        try:
            out[key] = _coerce(annotation, value)
        except TypeError as exc:
            raise ConfigError(f"config file {str(path)!r}: [{section}] {key}: {exc}") from None
    return out


def _coerce(annotation: str, value: object) -> object:
    """``value`` as the type ``annotation`` names (a field's annotation, as text)."""
    kind = annotation.removesuffix(" | None")
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "Path" and isinstance(value, str):
        return expand_user(value)
    strings = isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "tuple[str, ...]" and strings:
        return tuple(value)  # type: ignore[arg-type]
    if kind == "tuple[Path, ...]" and strings:
        return tuple(expand_user(v) for v in value)  # type: ignore[attr-defined]
    expected = {
        "bool": "true or false",
        "int": "a whole number",
        "float": "a number",
        "str": "a string",
        "Path": "a path (a string)",
        "tuple[str, ...]": "a list of strings",
        "tuple[Path, ...]": "a list of paths (strings)",
    }.get(kind)
    if expected is None:
        raise TypeError("cannot be set in the config file")
    raise TypeError(f"{value!r} is not {expected}")
