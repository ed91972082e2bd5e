"""A link that sends a hug: `pillowd invite --page` publishes the send page on Azurite's
blob service ($web), sets the Queue service's CORS rule, and a friend's phone-sized
Chromium sends a hug through the link that a real pillow plays.

Azurite's blob service keeps $web and the static website's properties but serves no
static website, so a small server here stands in for Azure's: it serves what
`invite --page` uploaded to $web, with the content types it set, on its own origin.
Azurite enforces the Queue service's CORS preflight (no matching rule: 403
CorsPreflightFailure), and the tests rely on that: the same link opened on another
origin reaches nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import AccessPolicy, CorsRule

from conftest import PillowProcess, run_cli, wait_for
from pillowd.testing.azurite import AzuriteBlob
from test_pairing import one_line_error, pillow_config, policies, until

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
# As tests/test_page.py: Debian's Chromium with its calls home off (no internet here).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PHONE = dict(viewport={"width": 390, "height": 844}, device_scale_factor=3,
             is_mobile=True, has_touch=True)
ANSWERED = "#status[data-state]:not([data-state='sending'])"


class StaticWebsite:
    """Azure's static website, as far as the page needs it: GET /PATH answers the
    $web blob PATH (PATH/ its index document) with the blob's content type."""

    def __init__(self, blobs):
        self.blobs = blobs
        self.paths: list[str] = []  # every path asked for: no secret may be among them
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                site.paths.append(self.path)
                path = urlsplit(self.path).path.lstrip("/")
                if path.endswith("/") or not path:
                    website = site.blobs.get_service_properties()["static_website"]
                    path += website.index_document or "index.html"
                blob = site.blobs.get_container_client("$web").get_blob_client(path)
                try:
                    data = blob.download_blob().readall()
                    settings = blob.get_blob_properties().content_settings
                except ResourceNotFoundError:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", settings.content_type)
                self.send_header("Cache-Control", settings.cache_control or "no-cache")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        # HTTP/1.0, one request per connection: one thread serves them all.
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       name="static-website", daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def blob_service(tmp_path):
    """A blob service of the test's own: $web and its remembered address start empty."""
    server = AzuriteBlob(tmp_path / "blob").start()
    yield server
    server.stop()


@pytest.fixture
def websites(blob_service):
    started = []

    def start() -> StaticWebsite:
        started.append(StaticWebsite(blob_service.service()))
        return started[-1]
    yield start
    for site in started:
        site.close()


@pytest.fixture
def cors(azurite):
    """The session's Queue service CORS rules, put back as they were after the test."""
    service = azurite.service()
    before = service.get_service_properties()["cors"]
    yield service
    service.set_service_properties(cors=before)


@pytest.fixture
def prefix(request):
    import hashlib
    return "w" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10] + "-"


@pytest.fixture
def owner(azurite, blob_service):
    """The owner's computer: the account key with both endpoints, nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "PILLOWD_"))}
    env["AZURE_STORAGE_CONNECTION_STRING"] = (
        azurite.connection_string() + f"BlobEndpoint={blob_service.endpoint};")
    return env


@pytest.fixture
def bare_env():
    """A pillow's environment: no account key anywhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PILLOWD_", "AZURE_", "NOTIFY_SOCKET", "WATCHDOG_",
                                "CREDENTIALS_DIRECTORY"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def phone(browser):
    """A phone-sized page in a fresh context; at the end, every request it made
    stayed on this machine and no script failed."""
    contexts, requests, errors = [], [], []

    def open_(**options):
        context = browser.new_context(**PHONE, **options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("request", lambda r: requests.append(r))
        page.on("pageerror", lambda err: errors.append(str(err)))
        return page

    open_.requests = requests
    yield open_
    for context in contexts:
        context.close()
    foreign = [r.url for r in requests if urlsplit(r.url).hostname != "127.0.0.1"]
    assert foreign == [], f"requests left this machine: {foreign}"
    assert errors == [], f"errors in the page's scripts: {errors}"


def pillowd(env, *args, check=True):
    return run_cli(*args, env=env, check=check)


def tap_and_read(page, button="Send Alice a hug"):
    """Taps the button; returns the page's answer as (state, words)."""
    page.evaluate("document.getElementById('status').removeAttribute('data-state')")
    page.get_by_role("button", name=button).tap()
    status = page.wait_for_selector(ANSWERED)
    return status.get_attribute("data-state"), status.text_content()


def test_a_friends_phone_sends_a_hug_through_the_link_and_the_pillow_plays_it(
        azurite, blob_service, websites, cors, owner, bare_env, prefix, tmp_path, phone,
        watch):
    # An owner's rule for another site is kept as it is.
    theirs = CorsRule(["https://owner.example"], ["GET"], max_age_in_seconds=60)
    cors.set_service_properties(cors=[theirs])
    out = tmp_path / "pair"
    pillowd(owner, "pair", "alice", "bob", "--out", str(out), "--prefix", prefix)
    site = websites()

    # The address is needed once (the data plane cannot tell it), then remembered.
    one_line_error(pillowd(owner, "invite", "Carol", "--to", "alice", "--prefix", prefix,
                           "--page", check=False), "--page-url", "later runs remember it")
    assert "carol" not in policies(azurite, f"{prefix}alice")  # nothing was changed
    made = pillowd(owner, "invite", "Carol", "--to", "alice", "--prefix", prefix, "--page",
                   "--page-url", site.origin + "/")
    url, link = made.stdout.split()
    assert url.startswith(f"{azurite.endpoint}/{prefix}alice/messages?") and "si=carol" in url
    assert link.startswith(f"{site.origin}/hug/#")
    fragment = parse_qs(urlsplit(link).fragment)
    assert fragment["from"] == ["Carol"] and fragment["to"] == ["alice"]
    assert fragment["q"] == [url]
    expiry = policies(azurite, f"{prefix}alice")["carol"][1]
    assert until(fragment["until"][0]) == until(expiry)
    # Again, without the address: remembered, the same link, nothing changed.
    def uploaded():
        site_files = blob_service.service().get_container_client("$web")
        return {b.name: b.etag for b in site_files.list_blobs()}
    rules, files = cors.get_service_properties()["cors"], uploaded()
    assert sorted(files) == [f"hug/{n}" for n in
                             ("icon.svg", "index.html", "send.css", "send.js", "sw.js")]
    assert pillowd(owner, "invite", "Carol", "--to", "alice", "--prefix", prefix,
                   "--page").stdout.split() == [url, link]
    assert [vars(r) for r in cors.get_service_properties()["cors"]] == \
        [vars(r) for r in rules]
    assert uploaded() == files
    types = {b.name: b.content_settings.content_type for b in
             blob_service.service().get_container_client("$web").list_blobs()}
    assert types["hug/index.html"].startswith("text/html")
    assert all(types[f"hug/{n}"].startswith("text/javascript") for n in ("send.js", "sw.js"))

    # The Queue service lets that origin POST, and nothing else; the owner's rule stays.
    (kept, ours) = rules
    assert vars(kept) == vars(theirs)
    assert (ours.allowed_origins, ours.allowed_methods, ours.allowed_headers,
            ours.exposed_headers) == (site.origin, "POST", "content-type", "")
    website = blob_service.service().get_service_properties()["static_website"]
    assert website.enabled and website.index_document == "index.html"

    # The link opened on any other origin reaches nothing: the preflight is refused.
    elsewhere = websites()
    page = phone()
    page.goto(link.replace(site.origin, elsewhere.origin))
    assert tap_and_read(page)[0] == "unreachable"
    assert azurite.service().get_queue_client(f"{prefix}alice").peek_messages() == []

    alice = PillowProcess(pillow_config(out / "alice", tmp_path), bare_env).start()
    try:
        watcher = watch(alice.url)
        page = phone()
        page.goto(link)
        # The invite's name is the sender's, prefilled and editable, not a title.
        assert page.text_content("h1") == "A hug for Alice"
        assert page.get_by_label("Your name").input_value() == "Carol"
        page.get_by_label("Your name").fill("Carol and Dan")
        page.fill("#text", "thinking of you")
        # Each colour chip has a name a screen reader says.
        for colour in ("the pillow's own colour", "red", "orange", "yellow", "green",
                       "blue", "purple"):
            assert page.get_by_role("radio", name=colour, exact=True).count() == 1, colour
        page.locator("label[title=blue]").tap()
        state, words = tap_and_read(page)
        assert state == "sent", words
        assert "Alice's pillow plays it" in words

        played = watcher.wait_state(
            lambda s: (s.get("message") or {}).get("from") == "Carol and Dan", timeout=30,
            message="carol's hug playing on alice")
        assert played["scene"] == "hug" and played["color"] == "#007aff"
        assert played["message"]["text"] == "thinking of you"
        wait_for(lambda: any(i["from"] == "Carol and Dan" and i["outcome"] == "applied"
                             for i in alice.get("/api/history").json()["items"]),
                 timeout=30, message="carol's hug in alice's history")

        # Saved to the home screen, it opens with no network and says so plainly.
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        page.context.set_offline(True)
        page.goto(f"{site.origin}/hug/")  # no fragment: the invite kept on the phone
        state, words = tap_and_read(page)
        assert state == "unreachable" and "check the connection" in words
        page.context.set_offline(False)
    finally:
        assert alice.stop() == 0
    # Neither the static website nor anything but the queue saw the token.
    secret = parse_qs(urlsplit(url).query)["sig"][0]
    assert all(secret not in path and "sig" not in path for path in site.paths)
    posts = [r for r in phone.requests if r.method == "POST"]
    assert {urlsplit(r.url).netloc for r in posts} == {urlsplit(azurite.endpoint).netloc}


def test_an_expired_or_revoked_link_says_so(azurite, websites, cors, owner, prefix,
                                            tmp_path, phone):
    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path), "--prefix", prefix)
    site = websites()
    _, dave = pillowd(owner, "invite", "dave", "--to", "alice", "--prefix", prefix,
                      "--page", "--page-url", site.origin).stdout.split()
    _, erin = pillowd(owner, "invite", "erin", "--to", "alice", "--prefix", prefix,
                      "--page").stdout.split()

    page = phone()
    page.goto(dave)
    assert tap_and_read(page)[0] == "sent"
    pillowd(owner, "revoke", "dave")

    # Azure may honour a revoked token for 30 s; Azurite refuses it at once.
    def refused():
        state, words = tap_and_read(page)
        return state != "sent" and (state, words)
    state, words = wait_for(refused, timeout=40, interval=1, message="the revoked link")
    assert state == "revoked" and "this link was revoked" in words, words
    assert page.evaluate("localStorage.getItem('pillowd-invite')") is None  # forgotten

    # Eight days on: erin's invite has expired at the queue and on the phone's clock.
    queue = azurite.service().get_queue_client(f"{prefix}alice")
    held = queue.get_queue_access_policy()
    ended = datetime.now(timezone.utc) - timedelta(minutes=1)
    held["erin"] = AccessPolicy(permission="a", expiry=ended)
    queue.set_queue_access_policy(held)
    page = phone()
    page.clock.install(time=datetime.now(timezone.utc) + timedelta(days=8))
    page.goto(erin)
    state, words = tap_and_read(page)
    assert state == "expired" and "this link expired on" in words, words
    assert "Ask for a new one" in words

    # A link whose q is not a queue's /messages endpoint sends nothing anywhere.
    page = phone()
    page.goto(f"{site.origin}/hug/#to=alice&q=https%3A%2F%2Fcollect.example%2Fwords")
    assert page.is_visible("#no-invite") and not page.is_visible("button.send")


def test_the_page_sends_to_its_own_accounts_queues_and_nowhere_else(
        azurite, websites, cors, owner, prefix, tmp_path, phone):
    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path), "--prefix", prefix)
    site, collector = websites(), websites()
    url, link = pillowd(owner, "invite", "carol", "--to", "alice", "--prefix", prefix,
                        "--page", "--page-url", site.origin).stdout.split()
    page = phone()
    page.goto(link)
    # Its policy, written by invite --page: it connects to the account's queues alone.
    policy = page.get_attribute('meta[http-equiv="Content-Security-Policy"]', "content")
    assert f"connect-src {azurite.endpoint}/;" in policy
    assert "default-src 'none'" in policy and "unsafe" not in policy
    # Whatever runs on the page reaches nothing else.
    reached = page.evaluate("url => fetch(url, {method: 'POST', body: 'words'})"
                            ".then(() => 'reached', () => 'blocked')",
                            f"{collector.origin}/collect")
    assert reached == "blocked" and collector.paths == []
    # Served from a site that is not *.web.core.windows.net (as here, or a custom
    # domain), a link to another queue service shows no button and sends nothing.
    elsewhere = url.replace(urlsplit(azurite.endpoint).netloc,
                            urlsplit(collector.origin).netloc)
    forged = link.replace(quote(url, safe=""), quote(elsewhere, safe=""))
    assert forged != link
    page = phone()
    page.goto(forged)
    assert page.is_visible("#no-invite") and not page.is_visible("button.send")
    assert collector.paths == []
    # The link itself still sends.
    page = phone()
    page.goto(link)
    assert tap_and_read(page)[0] == "sent"


def test_the_invite_is_kept_on_the_phone_only_until_it_expires(
        azurite, websites, cors, owner, prefix, tmp_path, phone):
    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path), "--prefix", prefix)
    site = websites()
    url, link = pillowd(owner, "invite", "carol", "--to", "alice", "--prefix", prefix,
                        "--page", "--page-url", site.origin).stdout.split()
    page = phone()
    page.goto(link)
    kept = "localStorage.getItem('pillowd-invite')"
    assert url in page.evaluate(kept)
    # Opened again without the link (the home screen): it still knows where to send.
    page.goto(f"{site.origin}/hug/")
    assert page.is_visible("button.send")
    # Eight days on, the seven-day invite is over: the phone holds its URL no longer,
    # as every page of the static website ($web) could read it there.
    page.clock.install(time=datetime.now(timezone.utc) + timedelta(days=8))
    page.goto(f"{site.origin}/hug/")
    assert page.is_visible("#no-invite") and not page.is_visible("button.send")
    assert page.evaluate(kept) is None


def test_what_a_friend_types_never_gets_the_hug_rejected(azurite, websites, cors, owner,
                                                         prefix, tmp_path, phone):
    from pillowd.config import parse
    from pillowd.messages import decode
    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path), "--prefix", prefix)
    site = websites()
    _, link = pillowd(owner, "invite", "carol", "--to", "alice", "--prefix", prefix,
                      "--page", "--page-url", site.origin).stdout.split()
    page = phone()
    page.goto(link)
    # Pasted from a chat: right-to-left marks (in Hebrew and Arabic text), a line
    # separator, a C1 control, an emoji.
    page.fill("#text", "\u05e9\u05dc\u05d5\u05dd\u200f \u2028hi\u0085 \U0001f917")
    assert tap_and_read(page)[0] == "sent"
    (message,) = azurite.service().get_queue_client(f"{prefix}alice").peek_messages()
    settings = parse('[scenes.idle]\neffect = "solid"\ncolor = "#000000"\n'
                     '[scenes.hug]\neffect = "solid"\ncolor = "#ff0000"\n')
    command = decode(message.content, settings)   # no Rejection: the pillow plays it
    assert command.text == "\u05e9\u05dc\u05d5\u05dd   hi  \U0001f917"


def test_a_full_queue_or_cors_table_is_named_and_nothing_is_published(
        azurite, blob_service, cors, owner, prefix, tmp_path):
    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path), "--prefix", prefix)
    queue = azurite.service().get_queue_client(f"{prefix}alice")
    year = datetime.now(timezone.utc) + timedelta(days=365)
    held = queue.get_queue_access_policy()
    held.update({f"other{n}": AccessPolicy(permission="a", expiry=year) for n in range(3)})
    queue.set_queue_access_policy(held)
    before = policies(azurite, f"{prefix}alice")
    rules = cors.get_service_properties()["cors"]

    result = pillowd(owner, "invite", "frank", "--to", "alice", "--prefix", prefix,
                     "--page", "--page-url", "https://pillows.z6.web.core.windows.net",
                     check=False)
    one_line_error(result, f"'{prefix}alice'", "5 stored access policies",
                   "nothing was changed")
    assert policies(azurite, f"{prefix}alice") == before
    assert len(cors.get_service_properties()["cors"]) == len(rules)
    assert [c.name for c in blob_service.service().list_containers()] == []

    # Five CORS rules already: named, and the invite is not made either.
    cors.set_service_properties(cors=[CorsRule([f"https://site{n}.example"], ["GET"])
                                      for n in range(5)])
    result = pillowd(owner, "invite", "gus", "--to", "bob", "--prefix", prefix,
                     "--page", "--page-url", "https://pillows.z6.web.core.windows.net",
                     check=False)
    one_line_error(result, "already has the 5 CORS rules", "nothing was changed")
    assert "gus" not in policies(azurite, f"{prefix}bob")

    for bad in ("ftp://x", "https://x.example/path", "https://x.example/?a=b"):
        one_line_error(pillowd(owner, "invite", "gus", "--to", "bob", "--prefix", prefix,
                               "--page", "--page-url", bad, check=False),
                       "is not a static website's address")


def test_without_the_owner_extra_invite_page_says_what_to_install(azurite, owner, prefix,
                                                                  tmp_path):
    """azure-storage-blob is for the owner's computer only (never in install.sh): a
    Python without it gets one line naming the extra, and no invite is made."""
    pillowd(owner, "pair", "alice", "bob", "--out", str(tmp_path), "--prefix", prefix)
    without_blob = ("import sys; sys.modules['azure.storage.blob'] = None; "
                    "from pillowd.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run(
        [sys.executable, "-c", without_blob, "invite", "hal", "--to", "alice", "--prefix",
         prefix, "--page", "--page-url", "https://pillows.z6.web.core.windows.net"],
        env=owner, capture_output=True, text=True, timeout=60)
    # pillowd is not on PyPI: the line installs the extra from this checkout.
    one_line_error(result, "needs azure-storage-blob", "-m pip install -e ", "[owner]")
    assert "hal" not in policies(azurite, f"{prefix}alice")
    # Without --page the owner extra is not needed at all.
    result = subprocess.run(
        [sys.executable, "-c", without_blob, "invite", "hal", "--to", "alice", "--prefix",
         prefix], env=owner, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "/messages?" in result.stdout, result.stderr
    assert json.dumps(policies(azurite, f"{prefix}alice")["hal"][0]) == '"a"'


def test_send_takes_the_messages_endpoint_and_the_bare_queue_url():
    from pillowd.errors import PillowError
    from pillowd.queues.azure import queue_from_url
    sas = "sv=2026-10-06&si=carol&sig=abc%3D"
    for url in (f"https://acct.queue.core.windows.net/pillow-alice/messages?{sas}",
                f"https://acct.queue.core.windows.net/pillow-alice/messages/?{sas}",
                f"https://acct.queue.core.windows.net/pillow-alice?{sas}",
                f"http://127.0.0.1:10001/devstoreaccount1/pillow-alice/messages?{sas}"):
        queue = queue_from_url(url)
        assert queue.name == "pillow-alice"
        assert queue.account.tokens == {"pillow-alice": sas}
        assert queue.account.url.endswith(("windows.net/", "devstoreaccount1/"))
    for bad, why in (("ftp://acct/pillow-alice?" + sas, "is not a queue URL"),
                     ("https://acct.queue.core.windows.net/pillow-alice/messages",
                      "has no SAS token")):
        with pytest.raises(PillowError) as err:
            queue_from_url(bad)
        assert why in str(err.value) and "sig" not in str(err.value)


def test_the_page_is_written_for_its_accounts_queue_endpoint_alone():
    from pillowd.hugs.sendpage import PAGE_FILES, PageError, page_file, queue_endpoint
    assert queue_endpoint("https://ourpillows.queue.core.windows.net") == \
        "https://ourpillows.queue.core.windows.net/"
    assert queue_endpoint("http://127.0.0.1:10001/devstoreaccount1/") == \
        "http://127.0.0.1:10001/devstoreaccount1/"
    # Nothing that a policy or an attribute would read as more than one address.
    for bad in ("https://a.example; connect-src *", "https://a.example/x y",
                "https://a.example/\"><script>", "ftp://a.example/", "https://u@a.example/"):
        with pytest.raises(PageError):
            queue_endpoint(bad)
    page = page_file(PAGE_FILES / "index.html", "https://ourpillows.queue.core.windows.net/")
    assert b"{{" not in page
    assert page.count(b"https://ourpillows.queue.core.windows.net/") == 2


def test_the_send_button_held_sends_how_long_it_was_held_and_the_pillow_plays_longer(
        azurite, websites, cors, owner, prefix, tmp_path, phone, bare_env, watch):
    """Press and hold on a friend's phone: a ring fills while held, the hug goes on
    release with its hold; held past 30 s it goes at 30 s, once."""
    from pillowd.messages import unwrap
    out = tmp_path / "pair"
    pillowd(owner, "pair", "alice", "bob", "--out", str(out), "--prefix", prefix)
    site = websites()
    _, link = pillowd(owner, "invite", "carol", "--to", "alice", "--prefix", prefix,
                      "--page", "--page-url", site.origin).stdout.split()
    queue = azurite.service().get_queue_client(f"{prefix}alice")

    def held() -> list[float | None]:
        return [json.loads(unwrap(m.content)).get("hold")
                for m in queue.peek_messages(max_messages=32)]
    page = phone()
    page.clock.install()          # the page's own clock: held seconds without waiting
    page.goto(link)
    button = page.get_by_role("button", name="Send Alice a hug")
    box = button.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.clock.fast_forward(3000)
    assert "holding" in button.get_attribute("class")
    assert page.evaluate("getComputedStyle(document.querySelector('button.send'), "
                         "'::after').opacity") == "1"
    assert queue.peek_messages() == []                 # nothing goes while held
    page.mouse.up()
    assert page.wait_for_selector(ANSWERED).get_attribute("data-state") == "sent"
    (first,) = wait_for(held, message="the held hug in alice's queue")
    assert 3 <= first < 4.5
    page.evaluate("document.getElementById('status').removeAttribute('data-state')")
    page.mouse.down()
    page.clock.fast_forward(30_000)
    assert page.wait_for_selector(ANSWERED).get_attribute("data-state") == "sent"
    page.clock.fast_forward(270_000)
    page.mouse.up()
    assert state_tap(button) == "sent"                 # a key: a hug of its own
    assert wait_for(lambda: len(held()) == 3 and held(), message="three hugs")[1:] == \
        [30, None]

    # alice plays the held one longer: 3 s and more × hold_scale 2 (the scene is 1.5 s).
    queue.clear_messages()
    alice = PillowProcess(pillow_config(out / "alice", tmp_path), bare_env).start()
    try:
        watcher = watch(alice.url)
        page.evaluate("document.getElementById('status').removeAttribute('data-state')")
        page.mouse.down()
        page.clock.fast_forward(4000)
        page.mouse.up()
        page.wait_for_selector(ANSWERED)
        state = watcher.wait_state(lambda s: (s.get("message") or {}).get("hold"),
                                   timeout=30, message="carol's held hug on alice")
        since = datetime.fromisoformat(state["since"].replace("Z", "+00:00"))
        ends = datetime.fromisoformat(state["until"].replace("Z", "+00:00"))
        hold = state["message"]["hold"]
        assert 4 <= hold < 5.5 and (ends - since).total_seconds() == pytest.approx(
            hold * 2, abs=0.01)
    finally:
        assert alice.stop() == 0


def state_tap(button) -> str:
    """Enter on the send button (a tap, no hold); the answer's state."""
    page = button.page
    page.evaluate("document.getElementById('status').removeAttribute('data-state')")
    button.press("Enter")
    return page.wait_for_selector(ANSWERED).get_attribute("data-state")
