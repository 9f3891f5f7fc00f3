"""`python -m bridge.bench.scaling` keeps working: a tiny run on PostgreSQL with one and two bridge processes and
on SQLite. Not a timed test: it checks that every figure is there and positive, whatever this machine's speed;
the bench itself fails unless each drain stored every reading once."""

import json
import os
import signal
import subprocess
import sys

from tests.processes import REPO

TIMEOUT_S = 270  # under pytest's own 300 s, so that a hung run ends here with its progress

RUN_FIELDS = {"processes", "database", "drain_rate", "rows_per_reading", "rows_per_s", "stored", "distinct"}


def test_scaling_small_run() -> None:
    """Three drains of 600 readings over 20 characteristics: 1 and 2 processes on PostgreSQL, 1 on SQLite; each
    stored every reading once, and its rates are positive."""
    # a session of its own: on a timeout its whole group goes (its bridges, broker and gauges), by its id
    proc = subprocess.Popen([sys.executable, "-m", "bridge.bench.scaling", "--characteristics", "20",
                             "--backlog", "600", "--processes", "1,2", "--json"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        raise AssertionError(f"no result within {TIMEOUT_S} s:\n{stderr[-3000:]}") from None
    assert proc.returncode == 0, stderr[-3000:]
    assert "[bench" in stderr
    figures = json.loads(stdout)
    assert (figures["characteristics"], figures["backlog"]) == (20, 600), figures
    runs = figures["runs"]
    assert [(run["processes"], run["database"]) for run in runs] == [(1, "postgresql"), (2, "postgresql"),
                                                                      (1, "sqlite")], runs
    for run in runs:
        assert RUN_FIELDS <= run.keys(), run
        assert run["stored"] == run["distinct"] == 600, run
        assert run["drain_rate"] > 0 and run["rows_per_reading"] > 0 and run["rows_per_s"] > 0, run
        # a reading and its sample at least
        assert run["rows_per_reading"] >= 2, run
    assert all(run["writes_per_reading"] >= run["rows_per_reading"] for run in runs[:2]), runs
    assert runs[2]["writes_per_reading"] is None, runs
