"""``python -m wfe_core.cli``: the same as the ``wfe`` command."""

from wfe_core.cli.main import main

if __name__ == "__main__":  # pragma: no cover
    main()
