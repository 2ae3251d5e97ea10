"""``python -m audiorag``: the same command line as the ``audiorag`` console script."""

from __future__ import annotations


def run() -> None:
    """Run the ``audiorag`` command line (its ``main`` wrapper when the CLI has one, else the Typer app)."""
    from . import cli
    main = getattr(cli, "main", None)
    if main is not None:
        main()
    else:
        cli.app(prog_name="audiorag")


if __name__ == "__main__":
    run()
