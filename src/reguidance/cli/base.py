"""The ``reguidance`` command: wiring only (options -> checks -> library calls -> messages).

The error contract (:func:`main`): a user error — :class:`reguidance.conventions.InputError`, click's usage errors,
and what a user can cause in the machine's state (``OSError``: a missing, unreadable or read-only path, a full disk;
a corrupt weights file: ``SafetensorError`` or a refused unpickle; a busy output folder) — prints ONE line on
stderr and exits with status 2. Ctrl-C prints one line and exits with 130, leaving no torn file behind. Any other
exception is a bug: it keeps its traceback (exit 1). Every command checks its options, paths, ranges, device and
output location before it loads a model or writes a file (:func:`_options` turns a ``ValueError`` raised while
checking what the user typed into an ``InputError`` named by the flag).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from .. import __version__
from .support import _one_line, _user_errors

if TYPE_CHECKING:
    pass

__all__ = ["cli", "main", "run"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reguidance")
def cli() -> None:
    """ReGuidance: make diffusion posterior samplers solve hard inverse problems."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the click group under the error contract of this module's docstring; returns the exit
    status (0 done, 2 user error, 130 interrupted; a bug raises with its traceback)."""
    try:
        cli.main(args=argv, prog_name="reguidance", standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.Abort:
        click.echo("error: interrupted; finished work is kept, rerun the command to resume", err=True)
        return 130
    except click.ClickException as e:
        click.echo(f"error: {' '.join(e.format_message().split())}", err=True)
        return 2
    except Exception as e:
        from ..conventions import InputError

        if isinstance(e, (InputError, *_user_errors())):
            click.echo(f"error: {_one_line(e)}", err=True)
            return 2
        raise
    return 0


def run() -> None:
    """Console-script wrapper around :func:`main`."""
    sys.exit(main())


if __name__ == "__main__":
    run()
