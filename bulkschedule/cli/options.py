"""Command-line options built from the settings table (`app.config.SETTINGS`).

A command decorated with ``@setting_options("send")`` gets one flag per setting of that scope
(plus ``--config``), generated from the table, and receives a resolved `Settings` as ``settings``
instead of the raw flags: a flag cannot be renamed without its setting, and no command reads a
setting by string key. Numbers and rates reach `load_settings` as typed, so the same parser with
the same bounds checks a flag, an environment variable and a config file, and a bad value is one
line naming the flag and the range (exit 2), not a usage screen.

`Number` is the same parser as a click type, for the options of one command (``--port``,
``--speed``) that are not settings.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import click

from bulkschedule.app.config import (
    CONFIG_FLAG,
    CONFIG_HELP,
    SETTINGS,
    Choice,
    Setting,
    Settings,
    Switch,
    load_settings,
)
from bulkschedule.cli.common import apply
from bulkschedule.core.numbers import parse_number

R = TypeVar("R")

#: The click parameter that names the config file.
CONFIG_PARAM = "config_path"


def _option(setting: Setting) -> Callable[[Any], Any]:
    """The flag of one setting. Values stay text (or a bool for a switch) for the table's parser;
    only choices are checked by click too, so that the help lists them."""
    assert setting.flag is not None
    kind = setting.kind
    if isinstance(kind, Choice):
        return click.option(setting.flag, setting.param, type=click.Choice(kind.choices),
                            default=None, metavar=setting.metavar, help=setting.help_text)
    if isinstance(kind, Switch):
        return click.option(setting.flag, setting.param, is_flag=True, default=None,
                            help=setting.help_text)
    kind_type = click.Path(file_okay=False) if setting.folder else None
    return click.option(setting.flag, setting.param, type=kind_type, default=None,
                        metavar=setting.metavar, help=setting.help_text)


def options_for(*scopes: str) -> list[Callable[[Any], Any]]:
    """The click options of every setting in ``scopes``, in table order, then ``--config``."""
    options: list[Callable[[Any], Any]] = []
    for setting in SETTINGS:
        if setting.scope not in scopes or setting.flag is None:
            continue
        options.append(_option(setting))
        options += [click.option(alias.flag, alias.param, is_flag=True, default=None,
                                 help=alias.help) for alias in setting.aliases]
    options.append(click.option(CONFIG_FLAG, CONFIG_PARAM, metavar="PATH", help=CONFIG_HELP))
    return options


def take_flags(params: dict[str, Any], scopes: Collection[str] | None = None
               ) -> dict[str, object]:
    """Remove the values of the settings in ``scopes`` (None: every setting) from a command's
    parameters: {param: value}. An alias (``--once``) becomes its setting's value; given
    together with the setting's own flag, it is a usage error. A parameter of the command's
    own that shares a name with a setting of another scope (``run --update`` and the inbox's
    ``update``) stays the command's."""
    flags: dict[str, object] = {}
    for setting in SETTINGS:
        if scopes is not None and setting.scope not in scopes:
            continue
        if setting.param in params:
            flags[setting.param] = params.pop(setting.param)
        for alias in setting.aliases:
            if not params.pop(alias.param, None):
                continue
            if flags.get(setting.param) is not None:
                raise click.UsageError(f"{alias.flag} and {setting.flag} exclude each other")
            flags[setting.param] = alias.value
    return flags


def resolve(flags: dict[str, object], config_path: str | None) -> Settings:
    """flag > environment > config file > default; a `ConfigError` (exit 2) says what is wrong."""
    return load_settings(flags, os.environ, config_path)


def setting_options(*scopes: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Give a command the flags of the settings in ``scopes`` and hand it ``settings``.

    Any parameter named like a setting (`Setting.param`) is taken too, so a command can declare a
    setting as an argument (the inbox's DIR) and still receive it through ``settings``.
    """

    def decorate(f: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(f)  # also carries the options already stacked on ``f`` (click keeps them)
        def command(**params: Any) -> R:
            config_path = params.pop(CONFIG_PARAM)
            settings = resolve(take_flags(params, scopes), config_path)
            return f(settings=settings, **params)

        return apply(command, options_for(*scopes))  # type: ignore[no-any-return]  # click's decorators are untyped

    return decorate


class Number(click.FloatRange):
    """A bounded number for an option that is not a setting, parsed as settings are
    (`core.numbers.parse_number`): ``--speed 1e308`` is refused with the range. A click range
    type, so the help shows the bounds."""

    def __init__(self, low: float, high: float, *, integer: bool = False) -> None:
        super().__init__(min=low, max=high)
        self.integer = integer
        self.name = "integer range" if integer else "float range"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            return parse_number(value, integer=self.integer, low=self.min, high=self.max)
        except ValueError as err:
            self.fail(str(err), param, ctx)
