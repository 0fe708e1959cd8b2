"""``python -m pconv_cli`` is the same as the ``pconv`` command."""

from pconv_cli.cli import main

if __name__ == "__main__":
    main()
