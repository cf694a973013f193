"""The runs root of a campaign on a tmpfs of its own (``--runs-tmpfs MB``, as root).

:func:`mount_runs` mounts it; the function it returns keeps a copy of the runs
(``runs.kept``, beside the mount point) and unmounts it, which the campaign calls however it
ends, Ctrl-C and SIGTERM included. A campaign killed outright (SIGKILL, the OOM killer) runs
nothing, so :func:`mount_runs` also starts a guard (``python -m chaos._runs_tmpfs``, in a
session of its own, so that a signal to the campaign's process group spares it): it waits for
the campaign to be gone and, if the tmpfs is still mounted, waits for the last process using
it to let go, then keeps the copy and unmounts it, as the campaign would have. Before, a
killed campaign's tmpfs stayed mounted, holding its memory, until someone ran ``umount``.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from chaos._errors import CampaignError

__all__ = ["guard", "keep_and_unmount", "mount_runs"]

#: How long the guard waits for the campaign's workers (which stop within half a second of
#: the campaign being gone) to let go of the tmpfs before it unmounts it lazily anyway.
_LET_GO_S = 30.0


def mount_runs(runs: Path, size_mb: int) -> Callable[[], None]:
    """Mount a tmpfs of ``size_mb`` MiB on ``runs`` and start its guard; the function that
    keeps a copy of the runs (``runs.kept``) and unmounts it."""
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(runs)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise CampaignError(
            f"--runs-tmpfs: cannot mount a tmpfs on {str(runs)!r} ({done.stderr.strip()}); "
            "it needs root"
        )
    subprocess.Popen(
        [sys.executable, "-m", "chaos._runs_tmpfs", str(os.getpid()), str(runs)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    return lambda: keep_and_unmount(runs)


def keep_and_unmount(runs: Path) -> None:
    """Copy the runs on the tmpfs at ``runs`` to ``runs.kept`` (the faults' filler files
    left out) and unmount it, lazily: a file still open on it does not keep it mounted."""
    subprocess.run(["mount", "-o", "remount,rw", str(runs)], capture_output=True, check=False)
    for leftover in runs.glob(".chaos-*"):
        leftover.unlink(missing_ok=True)
    shutil.copytree(runs, runs.with_name("runs.kept"), symlinks=True, dirs_exist_ok=True)
    subprocess.run(["umount", "-l", str(runs)], capture_output=True, check=False)


def guard(campaign_pid: int, runs: Path) -> None:
    """Wait for ``campaign_pid`` to end; then, if ``runs`` is still mounted (the campaign was
    killed outright), keep its runs and unmount it once no process uses it (or after
    :data:`_LET_GO_S`)."""
    try:
        pidfd = os.pidfd_open(campaign_pid)
    except ProcessLookupError:
        pass  # already gone
    except (OSError, AttributeError):  # no pidfd (not Linux 5.3+): ask every half second
        while _alive(campaign_pid):
            time.sleep(0.5)
    else:
        try:
            select.select([pidfd], [], [])  # readable once the process has ended
        finally:
            os.close(pidfd)
    if not os.path.ismount(runs):
        return  # the campaign unmounted it itself
    end = time.monotonic() + _LET_GO_S
    while _in_use(runs) and time.monotonic() < end:
        time.sleep(0.1)
    keep_and_unmount(runs)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _in_use(runs: Path) -> bool:
    """Whether a process other than this one has a file, or its working directory, under
    ``runs``.

    >>> import tempfile
    >>> runs = Path(tempfile.mkdtemp())
    >>> _in_use(runs)
    False
    >>> with open(runs / "log", "w"):
    ...     _in_use(runs)  # this process's own files do not count
    False
    >>> child = subprocess.Popen(["sleep", "30"], cwd=runs)
    >>> _in_use(runs)
    True
    >>> child.kill(); _ = child.wait()
    """
    inside = str(runs) + os.sep
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            links = [os.readlink(f"/proc/{pid}/cwd")]
            links += [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue  # gone, or not ours to look at
        if any(link == str(runs) or link.startswith(inside) for link in links):
            return True
    return False


if __name__ == "__main__":
    guard(int(sys.argv[1]), Path(sys.argv[2]))
