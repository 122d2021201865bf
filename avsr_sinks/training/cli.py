"""The scripts' entry point: the command line and the whole config are checked before the job runs.

``@entry_point("train")`` replaces ``@hydra.main``: it composes the config the way Hydra will,
turns every mistake (an unparsable override, a config group option that does not exist, a key
that does not, a value the schema refuses) into one line ``config error: <key>=<value>: <what
is wrong>; <what to do>`` on stderr and exit status 2, and only then hands over to Hydra. Nothing
here imports torch, so the answer comes back in about a second.
"""

from __future__ import annotations

import copy
import functools
import inspect
import sys
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, InterpolationResolutionError, OmegaConfBaseException

from .cli_overrides import normalize_overrides
from .config_rules import format_value
from .config_validation import MISSING, OPEN_MAPPINGS, ConfigError, key_paths, unknown_key_error, validate_config

CONFIG_ERROR_STATUS = 2


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _parse(overrides: list[str]) -> list[Override]:
    parser = OverridesParser.create()
    parsed = []
    for line in overrides:
        key, _, value = line.partition("=")
        try:
            override = parser.parse_overrides([line])[0]
        except OverrideParseException as err:
            raise ConfigError(key, value, f"cannot be parsed ({_first_line(err)})",
                              "write lists as key=[a,b] and quote strings with spaces or commas: key='a b'") from None
        if override.is_sweep_override():
            raise ConfigError(key, value, "a comma list is a sweep, and one run takes one value",
                              f"write a list as {key}=[{value}], quote a string as {key}='{value}', or add --multirun")
        parsed.append(override)
    return parsed


def _check_group_option(loader, override: Override) -> None:
    if override.is_delete():
        return
    options = loader.get_group_options(override.key_or_group)
    chosen = override.value()
    for option in chosen if isinstance(chosen, list) else [chosen]:
        if option is not None and option not in options:
            raise ConfigError(override.key_or_group, option, f"no such {override.key_or_group} option",
                              f"choose one of {', '.join(options)}")


def _override_error(override: Override, error: HydraException, defaults: DictConfig) -> ConfigError:
    cause = error.__cause__
    value = override.value()
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):  # struct mode: the key is not in the config
        key = cause.full_key or override.key_or_group
        inner = key.removeprefix(override.key_or_group + ".").split(".") if key != override.key_or_group else []
        for part in inner:  # the value of the unknown key inside a mapping value: {rank: 8, alpah: 16} -> 16
            value = value.get(part) if isinstance(value, dict) else value
        known = key_paths(OmegaConf.to_container(defaults, resolve=False))
        open_mapping = next((m for m in OPEN_MAPPINGS if key.startswith(m + ".")), None)
        if isinstance(known.get(open_mapping), dict):  # struct mode: a new key of it needs a +, though the schema takes it
            return ConfigError(key, value, f"a key {open_mapping} does not have yet", f"add it with +{key}={format_value(value)}")
        return unknown_key_error(key, value, known)
    if override.is_add() and cause is None:  # Hydra: "An item is already at ..."
        return ConfigError(override.key_or_group, value, "already exists, and + adds a new key",
                           f"drop the +: {override.input_line[1:]}")
    return ConfigError(override.key_or_group, value, _first_line(cause or error), "see the key's default in configs/")


def _resolved(node: DictConfig) -> dict:
    """``node`` as plain containers with interpolations resolved, except those that need Hydra's
    job runtime (``${hydra:runtime.output_dir}``: there is no job yet), which stay as written."""
    result = {}
    for key in node.keys():
        if OmegaConf.is_missing(node, key):
            result[key] = MISSING
            continue
        try:
            value = node[key]
            if isinstance(value, DictConfig):
                value = _resolved(value)
            elif isinstance(value, ListConfig):
                value = OmegaConf.to_container(value, resolve=True)
        except InterpolationResolutionError as err:
            raw = OmegaConf.to_container(node, resolve=False)[key]
            if "HydraConfig was not set" not in str(err):
                raise ConfigError(err.full_key or str(key), raw, f"cannot be resolved ({_first_line(err)})",
                                  "fix the ${...} interpolation") from None
            value = raw
        result[key] = value
    return result


def compose_checked(config_dir: str | Path, config_name: str, overrides: list[str]) -> tuple[dict, dict]:
    """The resolved config of ``config_name`` with ``overrides``, and its defaults: the same config
    with the overrides' group choices but none of their values. Hydra's composition, done in two
    steps (as Hydra does internally: the groups, then the values) so that the defaults come free."""
    parsed = _parse(overrides)
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        groups = [o for o in parsed if o.package is not None or loader.repository.group_exists(o.key_or_group)]
        for override in groups:
            _check_group_option(loader, override)
        try:
            defaults = compose(config_name, overrides=[o.input_line for o in groups], return_hydra_config=True)
        except (HydraException, OmegaConfBaseException) as err:
            raise ConfigError(" ".join(o.input_line for o in groups), "", _first_line(err), "see configs/") from None
        config = copy.deepcopy(defaults)
        for override in (o for o in parsed if all(o is not group for group in groups)):
            try:
                ConfigLoaderImpl._apply_overrides_to_config([override], config)
            except HydraException as err:
                raise _override_error(override, err, defaults) from None
    for tree in (config, defaults):  # Hydra's own settings: Hydra checked the overrides of them above
        with open_dict(tree):
            del tree["hydra"]
    return _resolved(config), _resolved(defaults)


def check_command_line(config_dir: str | Path, config_name: str, overrides: list[str]) -> dict:
    """Compose and validate; raises ConfigError. Returns the resolved config (without ``hydra``)."""
    config, defaults = compose_checked(config_dir, config_name, normalize_overrides(overrides))
    validate_config(config, config_name, defaults)
    return config


def exit_on_config_error(error: ConfigError):
    print(f"config error: {error}", file=sys.stderr)
    sys.exit(CONFIG_ERROR_STATUS)


def entry_point(config_name: str, config_path: str = "../configs", expand=None):
    """``@hydra.main`` for the scripts, with the command line and config checked first.

    Hydra's own flags (``--help``, ``--cfg job``, ``--multirun``, ...) skip the check and go to
    Hydra as they are; ``config_path`` is relative to the script, as for ``hydra.main``.
    ``expand``: rewrites the arguments first (train.py's ``resume=<run>``); it may raise ConfigError.
    """

    def decorator(task_function):
        config_dir = (Path(inspect.getfile(task_function)).parent / config_path).resolve()

        @functools.wraps(task_function)
        def main() -> None:
            try:
                sys.argv[1:] = normalize_overrides(expand(sys.argv[1:]) if expand else sys.argv[1:])
                if not any(arg.startswith("-") for arg in sys.argv[1:]):
                    check_command_line(config_dir, config_name, sys.argv[1:])
            except ConfigError as err:
                exit_on_config_error(err)
            hydra.main(version_base="1.3", config_path=str(config_dir), config_name=config_name)(task_function)()

        return main

    return decorator
