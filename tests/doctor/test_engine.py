"""A connection made through DuckDB's engine alone (doctor._engine) is a whole connection.

Each case runs in a fresh interpreter: in this one the ``duckdb`` package is loaded already,
and with it every connection's relation API.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

_PROBE = textwrap.dedent(
    """
    import sys
    from doctor._tables import Tables, new_connection

    tables = Tables(new_connection(1, relations=False))
    assert "_duckdb" in sys.modules and "duckdb" not in sys.modules
    tables.add_rows("runs", [("r1", "/x/r1", "kilroy", 7)])
    assert tables.sql("SELECT run_id, owner_pid FROM runs") == [("r1", 7)]
    # The relation API is loaded when a frame or an Arrow table is asked for.
    assert tables.arrow("runs", "r1").num_rows == 1
    assert tables.frame("SELECT count(*) AS n FROM runs")["n"].to_list() == [1]
    """
)


def test_a_connection_without_the_relation_layer_gives_rows_frames_and_arrow() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_engine_is_the_loaded_package_once_there_is_one() -> None:
    import duckdb

    from doctor._engine import engine

    assert engine(relations=False) is duckdb
    assert engine() is duckdb
