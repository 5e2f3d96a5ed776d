"""``python -m dimsearch``: the same as the ``dimsearch`` console script."""

from dimsearch.cli import main

main()
