"""``python -m doctor`` runs the ``doctor`` command line."""

from doctor._cli import main

main()
