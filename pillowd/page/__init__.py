"""The status page: the server, its admission (every limit), auth, routes, Socket.IO, /metrics.

Laid out as Flask's tutorial: `app` is the factory (StatusPage: the Flask app,
the blueprint, Socket.IO, the guard in front, the server), `routes` the blueprint
(every endpoint: add a route there and nothing else changes), `auth` who may
control the pillow, `broadcast` the live `state` and `frame` pushes, `server`
werkzeug's threaded server, `admission` the limits that keep a hostile LAN from
exhausting it, `metrics` what /metrics counts.

May import: messages, history, errors, settings, seams (floors below 7).
Must not import: hugs, the daemon, the player or consumer: the page gets the
parts it shows and drives (the snapshot, the controls, a hug's press) in
StatusPage's constructor. Flask, Flask-SocketIO and werkzeug are imported only here.

The daemon builds the page in two steps: build_live() (who may control it, and
Socket.IO's pushers, whose loops the daemon runs and watches), then build_page()
(the app, bound to its address).
"""


def build_live(web, token: str | None, pillow, renderer, *, fix, facts: dict):
    """(the auth Policy, the Broadcaster) for the [web] settings and the control
    *token*; the snapshot's ``web`` section says whether controls are on, why not
    (*fix()*: how to turn them on), and the hug button's *facts*."""
    from .auth import Policy
    from .broadcast import Broadcaster  # Flask-SocketIO only once the rest stands

    policy = Policy(token, allowed_hosts=web.allowed_hosts, private=web.private)
    pillow.section_changed("web", {
        "controls": policy.token is not None,
        "private": web.private,
        "problem": policy.token_problem,
        "fix": fix() if policy.token_problem else None,
        **facts})
    return policy, Broadcaster(pillow, renderer, admit=policy.admit)


def build_page(web, pillow, *, controls, hugs, health, broadcaster, policy, consumer,
               renderer, mqtt, closing):
    """(the StatusPage, bound to [web] host and port, and its address)."""
    from .app import StatusPage  # Flask only once everything before it stands
    from .metrics import Metrics

    page = StatusPage(
        pillow, controls=controls, hugs=hugs, health=health, broadcaster=broadcaster,
        policy=policy,
        metrics=lambda clients: Metrics(pillow, consumer, renderer, clients, mqtt=mqtt))
    url = page.bind(web.host, web.port)
    closing(page.close)
    return page, url
