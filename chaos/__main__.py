"""``python -m chaos``: the chaos commands (the same as ``doctor chaos``)."""

from chaos._cli import main

main()
