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
