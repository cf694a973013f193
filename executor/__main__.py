"""``python -m executor`` runs the executor's commands (also ``doctor run|worker|…``)."""

from executor._cli import main

main()
