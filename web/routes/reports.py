"""``/api/meetings/{id}/report.html|json|csv``: the post-meeting report (issue 7, part 4).

Presenter token as ``Authorization: Bearer`` or ``?token=`` (links opened in a
browser), like every other ``/api/meetings/{id}`` call. Rendering (matplotlib)
runs in a worker thread so the event loop keeps serving live feeds meanwhile.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

from bridge.executor import run_in_background
from bridge.insights.reports.exports import render_csv, render_json
from bridge.insights.reports.meeting_report import render_html, report_data
from bridge.service import MeetingNotFound
from web.deps import PresenterMeeting, ServiceDep

router = APIRouter(prefix="/api/meetings", tags=["reports"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or unknown presenter token"},
    403: {"description": "A token of another meeting, or a participant's join token"},
    404: {"description": "No such meeting"},
}


async def _data(meeting_id: str, service: ServiceDep) -> dict[str, Any]:
    async with service.sessions() as session:
        data = await report_data(session=session, meeting_id=meeting_id, settings=service.settings)
    if data is None:
        raise MeetingNotFound(meeting_id)
    return data


@router.get("/{meeting_id}/report.html", response_class=HTMLResponse, responses=_RESPONSES)
async def report_html(meeting_id: PresenterMeeting, service: ServiceDep) -> HTMLResponse:
    """The printable report page: charts, key moments, policy statement and (sales) coaching."""
    html = await run_in_background(render_html, await _data(meeting_id, service))
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@router.get("/{meeting_id}/report.json", responses=_RESPONSES)
async def report_json(meeting_id: PresenterMeeting, service: ServiceDep) -> Response:
    """The report's numbers as JSON (meeting, summary, coaching)."""
    body = render_json(await _data(meeting_id, service))
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/{meeting_id}/report.csv", responses=_RESPONSES)
async def report_csv(meeting_id: PresenterMeeting, service: ServiceDep) -> Response:
    """The report's numbers as one long CSV table (section, participant, metric, times, value, detail)."""
    body = render_csv(await _data(meeting_id, service))
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="microcue-report-{meeting_id[:40]}.csv"',
        },
    )
