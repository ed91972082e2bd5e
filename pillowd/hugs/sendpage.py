"""The friend's send page: its upload to the static website, the CORS rule for it, its link."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from ..errors import PillowError
from .pairing import Invite

if TYPE_CHECKING:
    from ..queues.azure import AzureAccount

# The page's files, shipped in the package (the source tree is the installed tree).
PAGE_FILES = Path(__file__).with_name("_send")
# Where they go on the static website: https://ACCOUNT.zNN.web.core.windows.net/hug/
FOLDER = "hug"
WEB_CONTAINER = "$web"
# The site's address, kept on the $web container once given: the data plane has no
# call that returns it (it is the management API's primaryEndpoints.web).
URL_METADATA = "pillowd_page_url"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# Azure allows five CORS rules per service.
MAX_CORS_RULES = 5
# A phone asks again at most once an hour before a hug (Chromium caps it at 2 h).
CORS_MAX_AGE = 3600


class PageError(PillowError, ValueError):
    """The send page cannot be published as asked, or its storage refused it."""


def _blob_sdk():
    try:
        import azure.storage.blob as blob
    except ImportError:
        from ..seams.checkout import install_line  # pillowd is not on PyPI: a line that works
        raise PageError("invite --page needs azure-storage-blob on this computer (never "
                        f"on a pillow): {install_line('owner')}") from None
    return blob


def page_origin(url: str) -> str:
    """The static website's origin (scheme://host[:port]) from *url*, or PageError."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query \
            or parts.fragment or parts.path not in ("", "/") or "@" in parts.netloc:
        raise PageError(f"--page-url {url!r} is not a static website's address "
                        "(https://ACCOUNT.zNN.web.core.windows.net, nothing after the host)")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _connection_fields(text: str) -> dict[str, str]:
    fields = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return fields


def _same_rule(rule, origin: str) -> bool:
    def items(text):
        return {i.strip().lower() for i in (text or "").split(",") if i.strip()}
    return items(rule.allowed_origins) == {origin.lower()} \
        and items(rule.allowed_methods) == {"post"} \
        and items(rule.allowed_headers) == {"content-type"}


# index.html holds this where `publish` writes the account's queue endpoint: the
# page's Content-Security-Policy lets it connect there alone, and its script takes a
# link's queue only from there. The files are static and shared by every link of
# the account, so the account (not the link, nor the site's host name) is what can
# be written into them; a meta policy is read once, before any script runs.
ENDPOINT_MARK = b"{{queue_endpoint}}"


def queue_endpoint(account_url: str) -> str:
    """The account's queue endpoint as a CSP source and a URL prefix
    (https://ACCOUNT.queue.core.windows.net/), or PageError."""
    parts = urlsplit(account_url)
    path = parts.path.rstrip("/") + "/"
    # Nothing a policy or an HTML attribute would read as more than one address.
    if parts.scheme not in ("https", "http") or not parts.netloc or "@" in parts.netloc \
            or not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", parts.netloc) \
            or not re.fullmatch(r"[A-Za-z0-9._~/-]*", path):
        raise PageError(f"the Queue service's address {parts.scheme}://{parts.netloc} "
                        "cannot be written into the send page's policy")
    return f"{parts.scheme}://{parts.netloc.lower()}{path}"


def page_file(path: Path, endpoint: str) -> bytes:
    """A page file as uploaded: index.html with the account's queue endpoint in it."""
    data = path.read_bytes()
    return data.replace(ENDPOINT_MARK, endpoint.encode("ascii")) \
        if path.name == "index.html" else data


class SendPage:
    """The send page on one storage account's static website, and the Queue
    service's CORS rule that lets that site's pages POST a hug.

    open() only reads, and refuses (PageError) what cannot be done; publish() then
    changes what needs changing, so a second run changes nothing.
    """

    def __init__(self, blobs, account: AzureAccount, origin: str, *, site_metadata,
                 cors: list, static_website):
        self.blobs = blobs
        self.account = account
        self.origin = origin
        self.endpoint = queue_endpoint(account.service.url.split("?", 1)[0])
        self._site_metadata = site_metadata  # None: no $web container yet
        self._cors = cors
        self._static_website = static_website

    @classmethod
    def open(cls, connection_string: str, account: AzureAccount,
             page_url: str | None) -> "SendPage":
        blob = _blob_sdk()
        fields = _connection_fields(connection_string)
        if "queueendpoint" in fields and "blobendpoint" not in fields:
            raise PageError(f"{account.source} names a QueueEndpoint but no BlobEndpoint: "
                            "invite --page uploads the page to the blob service; add "
                            "BlobEndpoint=...")
        from ..queues.azure import RETRY
        try:
            blobs = blob.BlobServiceClient.from_connection_string(
                connection_string.strip(), retry_policy=blob.LinearRetry(**RETRY))
        except ValueError:
            raise PageError(f"{account.source} is not a usable connection string for "
                            "the blob service") from None
        try:
            return cls._read(blobs, account, page_url)
        except BaseException:
            blobs.close()
            raise

    @classmethod
    def _read(cls, blobs, account: AzureAccount, page_url: str | None) -> "SendPage":
        from azure.core.exceptions import AzureError
        try:
            try:
                site_metadata = dict(blobs.get_container_client(WEB_CONTAINER)
                                     .get_container_properties().metadata or {})
            except AzureError as err:
                if _code(err) != "ContainerNotFound":
                    raise
                site_metadata = None
            static_website = blobs.get_service_properties()["static_website"]
        except AzureError as err:
            raise _error(err, blobs.primary_hostname, "reading the static website",
                         account.source) from None
        if page_url:
            origin = page_origin(page_url)
        elif (site_metadata or {}).get(URL_METADATA):
            origin = page_origin(site_metadata[URL_METADATA])
        else:
            raise PageError(
                "invite --page needs the static website's address once: --page-url "
                "https://ACCOUNT.zNN.web.core.windows.net (az storage account show "
                "--name ACCOUNT --query primaryEndpoints.web -o tsv); later runs "
                "remember it")
        try:
            cors = list(account.service.get_service_properties()["cors"] or [])
        except AzureError as err:
            raise account.error(err, "reading the Queue service's CORS rules") from None
        if not any(_same_rule(rule, origin) for rule in cors) \
                and len(cors) >= MAX_CORS_RULES:
            raise PageError(f"the Queue service already has the {MAX_CORS_RULES} CORS "
                            f"rules Azure allows; nothing was changed: remove one (portal: "
                            "the storage account, Resource sharing (CORS), Queue service)")
        return cls(blobs, account, origin, site_metadata=site_metadata, cors=cors,
                   static_website=static_website)

    @property
    def address(self) -> str:
        """The page's address; the folder alone when the site's index document is
        index.html, as it is when publish() turned the static website on."""
        website = self._static_website
        index = website.index_document if website is not None and website.enabled \
            else "index.html"
        return f"{self.origin}/{FOLDER}/" + ("" if index == "index.html" else "index.html")

    def publish(self) -> None:
        """Uploads what changed of the page, turns the static website on if it is
        off, remembers its address and adds the CORS rule if missing."""
        blob = _blob_sdk()
        from azure.core.exceptions import AzureError, ResourceExistsError
        site = self.blobs.get_container_client(WEB_CONTAINER)
        try:
            if self._site_metadata is None:
                try:
                    site.create_container()
                except ResourceExistsError:
                    pass  # made meanwhile (turning the website on makes it)
                self._site_metadata = {}
            held = {b.name: b.content_settings.content_md5
                    for b in site.list_blobs(name_starts_with=f"{FOLDER}/")}
            for path in sorted(PAGE_FILES.iterdir()):
                if path.suffix not in CONTENT_TYPES:
                    continue
                data = page_file(path, self.endpoint)
                md5 = hashlib.md5(data).digest()
                name = f"{FOLDER}/{path.name}"
                if held.get(name) is not None and bytes(held[name]) == md5:
                    continue
                site.upload_blob(name, data, overwrite=True, content_settings=
                                 blob.ContentSettings(
                                     content_type=CONTENT_TYPES[path.suffix],
                                     cache_control="no-cache", content_md5=bytearray(md5)))
            if self._static_website is None or not self._static_website.enabled:
                self._static_website = blob.StaticWebsite(enabled=True,
                                                          index_document="index.html")
                self.blobs.set_service_properties(static_website=self._static_website)
            if self._site_metadata.get(URL_METADATA) != self.origin:
                self._site_metadata[URL_METADATA] = self.origin
                site.set_container_metadata(self._site_metadata)
        except AzureError as err:
            raise _error(err, self.blobs.primary_hostname, "publishing the send page",
                         self.account.source) from None
        if not any(_same_rule(rule, self.origin) for rule in self._cors):
            from azure.storage.queue import CorsRule
            # The rules read back are handed back as they came: only ours is added.
            self._cors.append(CorsRule([self.origin], ["POST"],
                                       allowed_headers=["content-type"],
                                       max_age_in_seconds=CORS_MAX_AGE))
            try:
                self.account.service.set_service_properties(cors=self._cors)
            except AzureError as err:
                raise self.account.error(err, "adding the Queue service's CORS rule"
                                         ) from None

    def link(self, invite: Invite, sender: str) -> str:
        """The page's address with *invite* in its fragment: who sends (*sender*),
        and per pillow its name, its queue's add-only URL and until when it works.
        No server but the queue sees any of it: a fragment is never sent."""
        fields = [("from", sender)]
        for pillow, url in invite.urls.items():
            until = invite.expires[pillow].strftime("%Y-%m-%dT%H:%M:%SZ")
            fields += [("to", pillow), ("until", until), ("q", url)]
        return f"{self.address}#{urlencode(fields)}"

    def close(self) -> None:
        self.blobs.close()


def _code(err) -> str | None:
    from ..queues.azure import error_code
    return error_code(err)


def _error(err, host: str, what: str, source: str) -> PageError:
    """One line for a blob service error; never a key or a URL with a token."""
    from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                       ServiceRequestError, ServiceResponseError)

    from ..queues.azure import _network_reason
    if isinstance(err, (ServiceRequestError, ServiceResponseError)):
        return PageError(f"azure: {what}: cannot reach {host}: {_network_reason(err)}")
    if isinstance(err, HttpResponseError):
        answer = " ".join(str(p) for p in (err.status_code, _code(err)) if p)
        if isinstance(err, ClientAuthenticationError) or err.status_code in (401, 403):
            return PageError(f"azure: {source} was refused by the blob service ({answer})")
        return PageError(f"azure: {what}: the blob service answered {answer}")
    return PageError(f"azure: {what}: {type(err).__name__}")
