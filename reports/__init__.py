"""Run Doctor's reports: Markdown postmortems and fleet reports rendered from diagnoses.

>>> from doctor import Diagnosis
>>> from reports import render_postmortem
>>> render_postmortem(Diagnosis("r1", "/runs/r1", "kilroy", "succeeded", {})).splitlines()[0]
'# Postmortem: run r1'

Contexts (one per template) are documented in ``docs/reports.md``; the improvement plan that
maps finding codes to priorities, actions and acceptance checks is :data:`PLAN`.
"""

from reports._chaos import (
    ChaosContext,
    FaultKindRow,
    FaultRow,
    InvariantView,
    LatencyRow,
    NeverFiredRow,
    RecoveryRow,
    SkipRow,
    TicketCount,
    render_chaos,
)
from reports._context import FleetContext, PostmortemContext
from reports._errors import ReportError
from reports._escape import Text, code, md, mermaid
from reports._fleet import fleet_context
from reports._html import render_postmortem_html, svg_path_for, write_postmortem
from reports._plan import PLAN, PlanItem, plan_item
from reports._postmortem import postmortem_context
from reports._render import TEMPLATES, environment, render, render_fleet, render_postmortem
from reports._svg import OUTCOME_COLOURS, timeline_svg, zoom_window
from reports._throughput import (
    DayRow,
    DurationStats,
    StatusCount,
    Throughput,
    queue_throughput,
    queue_throughput_at,
)

__all__ = [
    "OUTCOME_COLOURS",
    "PLAN",
    "TEMPLATES",
    "ChaosContext",
    "DayRow",
    "DurationStats",
    "FaultKindRow",
    "FaultRow",
    "FleetContext",
    "InvariantView",
    "LatencyRow",
    "NeverFiredRow",
    "PlanItem",
    "PostmortemContext",
    "RecoveryRow",
    "ReportError",
    "SkipRow",
    "StatusCount",
    "Text",
    "Throughput",
    "TicketCount",
    "code",
    "environment",
    "fleet_context",
    "md",
    "mermaid",
    "plan_item",
    "postmortem_context",
    "queue_throughput",
    "queue_throughput_at",
    "render",
    "render_chaos",
    "render_fleet",
    "render_postmortem",
    "render_postmortem_html",
    "svg_path_for",
    "timeline_svg",
    "write_postmortem",
    "zoom_window",
]
