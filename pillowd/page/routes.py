"""The status page's HTTP routes, as a Flask blueprint: the page, the API and the controls."""

from __future__ import annotations

import functools
import json
import logging

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from ..errors import PillowError
from ..history import HistoryError
from ..messages import MAX_BODY, Rejection
from .auth import bearer, foreign_origin

log = logging.getLogger("pillowd.page.app")

bp = Blueprint("pillow", __name__)


def parts():
    """What the views work with (pillowd.page.app.Parts), as StatusPage gave it to the app."""
    return current_app.extensions["pillowd"]


def _refusal(status: int, message: str):
    reply = _error(status, message)
    if status == 429:
        reply[0].headers["Retry-After"] = str(parts().policy.retry_after(request.remote_addr))
    return reply


def _token_refusal():
    """The answer to a request without the right token, or None when it has it."""
    found = parts().policy.check_token(bearer(request.headers.get("Authorization")),
                                       request.remote_addr or "")
    return _refusal(*found) if found else None


@bp.before_app_request
def private():
    # [web] private: reading needs the token too; the page itself (which asks for
    # it), its files and /healthz do not.
    if parts().policy.private and request.endpoint not in (
            "pillow.index", "pillow.healthz", "static"):
        return _token_refusal()
    return None


def control(view):
    """*view* as a control endpoint: the origin and the token are checked first."""
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        foreign = foreign_origin(request.headers.get("Origin"),
                                 request.headers.get("Sec-Fetch-Site"),
                                 f"{request.scheme}://{request.host}")
        if foreign:
            return _error(403, foreign)
        return _token_refusal() or view(*args, **kwargs)
    return guarded


@bp.get("/")
def index():
    p = parts()
    # Private: the page asks for the token before it shows anything, its name included.
    return render_template("index.html", name="pillowd" if p.policy.private else p.pillow.name,
                           # "short": a token too short to accept; the page asks
                           # for it so that only its holder is told why.
                           controls="on" if p.policy.token is not None else (
                               "short" if p.policy.token_problem else "off"),
                           private=p.policy.private,
                           token_problem=(
                               "this pillow is private and has no control token: nothing "
                               "can be read here until one is configured"
                               if p.policy.private and p.policy.token is None else None))


@bp.get("/api/state")
def state():
    return jsonify(parts().pillow.snapshot())


@bp.get("/api/history")
def history():
    try:
        limit = int(request.args.get("limit", 50))
        before = request.args.get("before")
        before = int(before) if before not in (None, "") else None
    except ValueError:
        return _error(400, "limit and before must be whole numbers")
    if not 1 <= limit <= 1000:
        return _error(400, "limit must be between 1 and 1000")
    if before is not None and not 0 <= before < 2 ** 62:
        return _error(400, "before must be a cursor from an earlier page")
    return jsonify(parts().pillow.history_page(limit, before))


@bp.get("/healthz")
def healthz():
    health = parts().health
    reasons = health.reasons()
    # Private: /healthz answers without the token, so its notes name nothing (no
    # partner, queue or refusal); the page tells whoever holds the token.
    notes = _nameless_notes(health) if parts().policy.private else health.notes()
    if reasons:
        return jsonify({"status": "unhealthy", "reasons": reasons,
                        **({"notes": notes} if notes else {})}), 503
    # Troubles no restart would mend (a partner's queue refusing): said, not 503.
    return jsonify({"status": "ok", **({"notes": notes} if notes else {})})


def _nameless_notes(health) -> list[str]:
    """How many troubles each source of notes has, in words that name nothing."""
    notes = []
    for source, read in health.notes_from.items():
        found = len(read())
        if not found:
            continue
        if source == "outbox":
            notes.append(f"hugs to {found} partner{'s' if found > 1 else ''} are not "
                         "delivered yet (the page says more, to whoever holds its "
                         "control token)")
        else:
            notes.append(f"{source}: {found} trouble{'s' if found > 1 else ''} (the page "
                         "says more, to whoever holds its control token)")
    return notes


@bp.get("/metrics")
def metrics():
    body, content_type = parts().metrics.exposition()
    return Response(body, mimetype=content_type)


@bp.post("/api/scene")
@control
def scene():
    data = _json_object()
    if data is None:
        return _error(400, "body must be a JSON object like {\"scene\": \"hug\"}")
    try:
        outcome = parts().controls.play(data)
    except Rejection as err:
        return _error(400, str(err))
    except HistoryError as err:  # not recorded, so not played: try again later
        return _error(503, str(err))
    return jsonify(outcome.as_json())


@bp.post("/api/hug")
@control
def hug():
    hugs = parts().hugs
    if hugs is None:
        return _error(404, "this pillow sends no hugs")
    data = _json_object()
    if data is None:
        return _error(400, 'body must be a JSON object like {"hold": 2.5, "strength": 1}')
    unknown = sorted(set(data) - {"hold", "strength"})
    if unknown:
        return _error(400, f"unknown field {unknown[0][:40]!r} (known: hold, strength)")
    try:
        event_id = hugs.pressed(source="web", hold=data.get("hold"),
                                strength=data.get("strength"))
    except Rejection as err:  # out of range, not a number: nothing plays or goes
        return _error(400, str(err))
    except PillowError as err:  # the event could not be kept: not sent
        return _error(503, str(err))
    # Accepted: it plays here now; the partners get it once their queues take it.
    return jsonify({"id": event_id}), 202


@bp.post("/api/seen")
@control
def seen():
    hugs = parts().hugs
    if hugs is None:
        return _error(404, "this pillow keeps no messages from quiet hours")
    hugs.seen()
    return jsonify({"while_quiet": []})


@bp.post("/api/brightness")
@control
def brightness():
    controls = parts().controls
    data = _json_object()
    value = data.get("brightness") if data else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value <= 1:
        return _error(400, 'body must be like {"brightness": 0.5} (0..1)')
    controls.set_brightness(value)
    return jsonify({"brightness": controls.brightness})


@bp.post("/api/off")
@control
def off():
    controls = parts().controls
    controls.off()
    return jsonify({"brightness": controls.brightness, "lights": "off"})


@bp.post("/api/on")
@control
def on():
    """Lights on after POST /api/off: back to idle (what plays, plays on)."""
    controls = parts().controls
    controls.on()
    return jsonify({"lights": "off" if controls.lights_off else "on"})


@bp.post("/api/token")
def token():
    """Whether the token given works, changing nothing: the page checks a pasted
    token at once. A token refused as too short is told so, with how to mend it;
    any other answer is the controls' own (401, 403, 429)."""
    policy = parts().policy
    if policy.token is None:
        if policy.holds_refused_token(bearer(request.headers.get("Authorization")),
                                      request.remote_addr or ""):
            web = parts().pillow.snapshot().get("web") or {}
            return jsonify({"error": policy.token_problem, "fix": web.get("fix")}), 403
        return _error(403, "controls are off on this pillow")
    return _token_works()


@control
def _token_works():
    return jsonify({"token": "works"})


@bp.post("/api/quiet")
@control
def quiet():
    controls = parts().controls
    data = _json_object()
    value = data.get("quiet", True) if data is not None else None
    if not isinstance(value, bool):
        return _error(400, 'body must be like {"quiet": true}')
    controls.set_quiet(value)
    return jsonify({"quiet": controls.quiet})


@bp.app_errorhandler(413)
def too_large(err):
    return _error(413, f"body is larger than {MAX_BODY} bytes")


@bp.app_errorhandler(404)
def not_found(err):
    return _error(404, "no such page")


@bp.app_errorhandler(405)
def not_allowed(err):
    return _error(405, "method not allowed here")


@bp.app_errorhandler(Exception)
def unexpected(err):
    if isinstance(err, HTTPException):  # 400s and the like: their own words
        return _error(err.code or 500, err.description or err.name)
    # A bug: logged with its traceback, answered in JSON like every other error
    # (never werkzeug's HTML page, never the exception's text).
    log.exception("unexpected error in %s %s", request.method, request.path)
    return _error(500, "internal error; the pillow's log has the details")


def _json_object() -> dict | None:
    """The request's JSON object (an empty body is {}), or None; 413 past the limit."""
    try:
        data = json.loads(request.get_data() or b"{}")
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _error(status: int, message: str):
    return jsonify({"error": message}), status
