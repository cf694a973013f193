"""``doctor report --html``: the rogue run's postmortem as one page, drawn by a real Chromium.

The browser test is marked ``browser``: it needs Debian's ``chromium`` (``.ci/run`` installs
it); without one it is skipped, except under ``CI=true``, where it fails. Its screenshot is
kept in ``$RUNDOCTOR_ARTIFACTS`` (default ``artifacts/`` in the repository), under
``browser/``, for CI to publish.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.rogue import RUN_ID
from tests.helpers import unavailable

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture(scope="module")
def rogue_root(rogue_run: Path) -> Path:
    return rogue_run.parent  # the session's generated run, alone in its root


def _report(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "doctor", "report", "--root", str(root), "--run-id", RUN_ID]
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def page(rogue_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html") / "rogue.html"
    done = _report(rogue_root, "--html", "--out", str(out))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    return out


def _attempt_starts(run: Path) -> list[tuple[str, str]]:
    """(scope, node) of every ``stage_attempt_start`` in every stream, read straight from
    the files (not through the doctor)."""
    starts = []
    for stream in sorted(run.rglob("progress.ndjson")):
        scope = "" if stream.parent == run else stream.parent.relative_to(run).as_posix()
        for line in stream.read_text(encoding="utf-8").splitlines():
            if '"stage_attempt_start"' in line:
                event = json.loads(line)
                if event.get("event") == "stage_attempt_start" and event.get("node_id"):
                    starts.append((scope, event["node_id"]))
    return starts


def test_the_page_is_self_contained(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    assert "default-src 'none'" in html  # the browser may fetch nothing
    assert not re.search(r"\ssrc=|<link|@import|url\(\s*['\"]?https?:", html)
    assert "```mermaid" not in html and "gantt" not in html


def _main_svg(page: Path) -> str:
    html = page.read_text(encoding="utf-8")
    html = html[html.index('<svg xmlns="http://www.w3.org/2000/svg" class="timeline" ') :]
    return html[: html.index("</svg>")]


def test_every_attempt_is_one_bar_in_its_node_and_scope_lane(page: Path, rogue_root: Path) -> None:
    html = _main_svg(page)
    starts = _attempt_starts(rogue_root / RUN_ID)
    assert html.count('<rect class="bar ') == len(starts) > 124
    assert html.count('<g class="lane"') == len(set(starts))
    assert html.count('data-scope="parallel/fanout/') > 0  # branches have their own lanes
    # 36 laps of the scaffold loop: 36 bars on check_scaffold's lane, each with its title.
    assert len(re.findall(r"<title>check_scaffold \(top level\) visit \d+", html)) == 36


def test_bars_say_why_an_attempt_failed_on_hover(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    titles = re.findall(r'<rect class="bar outcome-fail"[^>]*><title>([^<]*)</title>', html)
    assert titles and all("failure reason: " in t for t in titles)


def test_heartbeat_only_stretches_are_shaded(page: Path) -> None:
    html = _main_svg(page)
    (shade,) = re.findall(r'<rect class="shade heartbeat-only"[^>]*><title>([^<]*)</title>', html)
    assert "7944 heartbeats and no progress for 48m 10s" in shade  # incident 04's figures


def test_the_fan_out_gets_a_zoomed_panel_of_its_own_lanes(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    zoom = html[html.index('class="timeline-zoom"') :]
    zoom = zoom[: zoom.index("</svg>")]
    assert "UTC, from 2026-02-10 16:" in zoom  # the fan-out started at 16:21:49
    assert (
        zoom.count('data-scope="parallel/fanout/')
        == html.count('<g class="lane" data-scope="parallel/fanout/') // 2
    )  # every branch lane, once in each panel
    assert 'data-node="analyze_spec"' not in zoom  # done hours before the fan-out: left out


def test_the_markdown_report_links_its_svg_written_beside_it(
    rogue_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "postmortem.md"
    done = _report(rogue_root, "--out", str(out))
    assert done.returncode == 0, done.stderr
    svg = tmp_path / "postmortem.timeline.svg"
    assert f"![Timeline of run {RUN_ID}](postmortem.timeline.svg)" in out.read_text()
    assert svg.read_text().startswith("<svg") and svg.read_text().count('class="bar ') > 124
    assert "```mermaid" in out.read_text()  # GitHub still draws its own chart


def test_html_goes_with_a_postmortem_not_the_fleet_report(rogue_root: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "doctor", "report", "--root", str(rogue_root), "--fleet", "--html"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--html goes with --run-id" in done.stderr


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        unavailable("chromium is not installed; .ci/run installs it (apt-get install chromium)")
    return found


def _browse(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.browser
def test_chromium_draws_every_attempt_bar_and_lane(
    page: Path, rogue_root: Path, tmp_path: Path
) -> None:
    dom = _browse(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = re.search(r'<output id="rendered" data-bars="(\d+)" data-lanes="(\d+)"', dom.stdout)
    assert rendered is not None, "the page's measuring script did not run"
    starts = _attempt_starts(rogue_root / RUN_ID)
    # Bars the browser laid out with a non-empty box: every attempt is visible.
    assert (int(rendered[1]), int(rendered[2])) == (len(starts), len(set(starts)))


@pytest.mark.browser
def test_chromium_screenshot_shows_failed_and_passed_attempts(page: Path, tmp_path: Path) -> None:
    from matplotlib.image import imread

    artifacts = Path(os.environ.get("RUNDOCTOR_ARTIFACTS") or REPO / "artifacts") / "browser"
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "rogue-postmortem.png"
    shot.unlink(missing_ok=True)
    done = _browse(tmp_path, "--window-size=1500,3000", f"--screenshot={shot}", page.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = (imread(shot)[:, :, :3] * 255).round()

    def count(hex_colour: str) -> int:
        rgb = [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]
        return int((abs(pixels - rgb).max(axis=2) <= 2).sum())

    assert count("#c62828") > 500 and count("#2e7d32") > 500  # fail red, success green
