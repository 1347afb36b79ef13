"""The one small interface every provider implements.

A provider says what options it offers (as data the forms render), checks an image
against its limits, predicts the output size for the quote, and speaks its wire
contract through `submit` / `poll` / `parse_webhook`, which return one of the three
result types below. Errors are classified once, in `ProviderError`.
"""

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from jobs import files
from jobs.errors import ProviderError, Refusal  # noqa: F401  (part of this interface)
from jobs.imaging import ImageInfo, human_bytes


# --- Results --------------------------------------------------------------------------
@dataclass(frozen=True)
class Running:
    task_id: str
    detail: str = ""


@dataclass(frozen=True)
class Finished:
    """Done at the provider: the result is at `url` (download it now, it expires) or,
    for providers that answer with the image itself, in `content`."""

    url: str = ""
    content: bytes = b""
    task_id: str = ""


@dataclass(frozen=True)
class Failed:
    code: str
    message: str


Result = Running | Finished | Failed


# --- Options --------------------------------------------------------------------------
# An output-format choice resolved per image when its job is made: PNG for an image with
# transparency, the provider's `opaque_format` otherwise. Never sent as such.
KEEP_TRANSPARENCY = "keep"
KEEP_TRANSPARENCY_LABEL = "Keep transparency"
KEEP_TRANSPARENCY_HELP = "Keep transparency: PNG for an image that has it, JPEG for the rest."


@dataclass(frozen=True)
class Option:
    """One provider option. `choices` make a select; otherwise a number in [min, max]."""

    name: str
    label: str
    default: object
    choices: tuple = ()  # ((value, label), ...)
    minimum: float | None = None
    maximum: float | None = None
    number_type: type = int
    suggestions: tuple = ()  # common values offered beside a free number
    help: str = ""

    @property
    def is_choice(self) -> bool:
        return bool(self.choices)

    def allowed_text(self) -> str:
        if self.is_choice:
            return ", ".join(str(v) for v, _ in self.choices)
        return f"a number from {self.minimum:g} to {self.maximum:g}"

    def clean(self, raw):
        if raw in (None, ""):
            return self.default
        if self.is_choice:
            for value, _label in self.choices:
                if str(raw).lower() == str(value).lower():
                    return value
            raise Refusal(
                f"{self.label} {raw!r} is not offered. Allowed: {self.allowed_text()}.",
                "bad_option",
            )
        try:
            value = self.number_type(raw)
        except (TypeError, ValueError):
            raise Refusal(
                f"{self.label} must be {self.allowed_text()}, not {raw!r}.", "bad_option"
            ) from None
        if not (self.minimum <= value <= self.maximum):
            raise Refusal(f"{self.label} must be {self.allowed_text()}, not {raw}.", "bad_option")
        return value


class Provider:
    """Base class. Subclasses set the class attributes and implement the methods."""

    slug = ""
    name = ""
    summary = ""
    options: tuple[Option, ...] = ()
    # True when the work happens on our worker (cannot be interrupted mid-way).
    runs_on_worker = False
    supports_webhook = False
    supports_cancel = False
    # True when `find_task` can tell whether a submit we lost track of reached the
    # provider (jobs.recovery); without it such a job stops as "unknown".
    supports_lookup = False

    # --- what the user picks --------------------------------------------------------
    def option(self, name: str) -> Option:
        for opt in self.options:
            if opt.name == name:
                return opt
        raise KeyError(name)

    def clean_options(self, raw: Mapping) -> dict:
        unknown = set(raw) - {o.name for o in self.options}
        if unknown:
            names = ", ".join(o.name for o in self.options) or "none"
            raise Refusal(
                f"{self.name} has no option {', '.join(sorted(unknown))}. Options: {names}.",
                "bad_option",
            )
        return {o.name: o.clean(raw.get(o.name)) for o in self.options}

    def describe(self, options: Mapping) -> str:
        parts = []
        for opt in self.options:
            value = options.get(opt.name, opt.default)
            label = dict(opt.choices).get(value, value) if opt.is_choice else value
            bare = opt.name in ("scale", "resolution")
            parts.append(str(label) if bare else f"{opt.label} {label}")
        return ", ".join(parts)

    # --- transparency -----------------------------------------------------------------
    opaque_format = "jpg"  # what KEEP_TRANSPARENCY becomes for an image without alpha

    def resolve_options(self, options: Mapping, image: ImageInfo) -> dict:
        """The options one image's job stores and sends: KEEP_TRANSPARENCY turned into a
        format the provider's contract takes."""
        if options.get("output_format") == KEEP_TRANSPARENCY:
            fmt = "png" if image.has_alpha else self.opaque_format
            return {**options, "output_format": fmt}
        return dict(options)

    def drops_transparency(self, options: Mapping) -> str:
        """The output format's name when these options make transparent parts opaque."""
        return "JPEG" if options.get("output_format") == "jpg" else ""

    @property
    def is_sandbox(self) -> bool:
        return False

    @property
    def available(self) -> bool:
        """Whether jobs may be sent to it now (the local provider always)."""
        return True

    @property
    def unavailable_reason(self) -> str:
        """Why it is not available, in words that tell an admin what to set ("" if it is)."""
        return ""

    # --- limits and prediction -------------------------------------------------------
    def check(self, image: ImageInfo, options: Mapping) -> None:
        """Raise Refusal if this provider cannot take the image with these options."""

    def output_size(self, image: ImageInfo, options: Mapping) -> tuple[int, int]:
        raise NotImplementedError

    # --- wire contract (async: the tracker polls hundreds of jobs on one loop) ---------
    async def submit(self, job, http) -> Result:
        raise NotImplementedError

    async def poll(self, job, http) -> Result:
        raise NotImplementedError

    async def cancel(self, job, http) -> bool:
        """Ask the provider to stop; False when it has no way to."""
        return False

    async def find_task(self, job, http) -> Result | None:
        """The provider's task for a job whose submit was interrupted before we saved its
        id (as `poll` would answer, or Running(task_id)); None when the provider
        certainly has no such task. Raise ProviderError when it cannot tell (an error,
        or a list too long to search): the job is then never sent again."""
        raise NotImplementedError

    def webhook_hint(self, data: dict) -> str:
        """What a webhook body (already parsed: a JSON object) claims, for the timeline.
        Never acted on: a webhook only makes us confirm with the provider at once."""
        return ""

    def first_poll_delay(self) -> float:
        return 1.0

    def poll_delay(self, poll_count: int) -> float:
        """Seconds until the next poll: quick at first, then every few seconds, so a
        finished task is noticed within ~5 s even without a webhook."""
        return min(1.0 + 0.5 * poll_count, 3.0)

    def result_hosts(self) -> set[str]:
        """Hosts allowed to be private/plain http when downloading results."""
        return set()


def fits_inline(size_bytes: int, max_body: int, room: int = 4096) -> bool:
    """Whether an image of `size_bytes` fits, as base64, in a JSON body of at most
    `max_body` bytes (`room` left for the rest of the body)."""
    return 4 * -(-size_bytes // 3) + room <= max_body


def _publicly_reachable(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".local"):
        return False
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:
        return True  # a DNS name: assume the deployment made it public


class HttpProvider(Provider):
    """A provider reached over HTTP, with its key and base URL from the environment.

    No key configured: the adapter talks to the sandbox, the local emulator mounted at
    PUBLIC_BASE_URL/sandbox/<slug>, with the sandbox's key. Same code path either way.
    With no key and sandboxes off (production's default) there is nothing to talk to:
    the provider is unavailable until an admin sets its key.
    """

    default_base_url = ""
    key_setting = ""  # the environment variable holding the key; "" means <SLUG>_API_KEY

    @property
    def _config(self) -> Mapping:
        return settings.PROVIDER_SETTINGS.get(self.slug, {})

    @property
    def is_sandbox(self) -> bool:
        return not self._config.get("api_key")

    @property
    def key_env(self) -> str:
        return self.key_setting or f"{self.slug.upper()}_API_KEY"

    @property
    def available(self) -> bool:
        return bool(self._config.get("api_key")) or settings.SANDBOX_ENABLED

    @property
    def unavailable_reason(self) -> str:
        if self.available:
            return ""
        return (
            f"{self.name} is not set up on this portal: an admin needs to set {self.key_env} "
            "(its API key)."
        )

    @property
    def api_key(self) -> str:
        return self._config.get("api_key") or settings.SANDBOX_API_KEY

    @property
    def base_url(self) -> str:
        if self._config.get("base_url"):
            return self._config["base_url"].rstrip("/")
        if self.is_sandbox:
            return f"{settings.PUBLIC_BASE_URL}/sandbox/{self.slug}"
        return self.default_base_url

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def result_hosts(self) -> set[str]:
        return {urlsplit(self.base_url).hostname or ""}

    @property
    def input_links_reachable(self) -> bool:
        """Whether the provider can fetch our input links: the sandbox always can, a real
        provider only if they point to a public address: PUBLIC_BASE_URL (signed links),
        or with media in a bucket, the bucket's endpoint (presigned links go there)."""
        targets = files.bucket_origins() or [settings.PUBLIC_BASE_URL]
        return self.is_sandbox or all(_publicly_reachable(url) for url in targets)

    def unreachable_link_refusal(self, image: ImageInfo, inline_max: int) -> Refusal:
        """The refusal for an image too big to send inline that the provider could not
        fetch by link either."""
        most = human_bytes((inline_max - 4096) * 3 // 4)
        if files.in_bucket():
            where = (
                f"the media bucket: its endpoint ({files.bucket_origins()[0]}) is not a public "
                "address. Use a smaller image, or ask an admin to move media to a bucket "
                "providers can reach."
            )
        else:
            where = (
                f"this portal: PUBLIC_BASE_URL ({settings.PUBLIC_BASE_URL}) is not a public "
                "address. Use a smaller image, or ask an admin to set PUBLIC_BASE_URL to the "
                "portal's public address."
            )
        return Refusal(
            f"This image ({human_bytes(image.size_bytes)}) is too large to send to {self.name} "
            f"inside the request (about {most} at most), and {self.name} cannot fetch it "
            f"from {where}",
            "input_unreachable",
        )

    def webhook_url(self, job) -> str:
        return f"{settings.PUBLIC_BASE_URL}/hooks/{self.slug}/{job.pk}/{job.webhook_token}/"

    @property
    def webhooks_enabled(self) -> bool:
        """Ask for webhooks only where they can arrive: the sandbox always reaches us; a
        real provider only if PUBLIC_BASE_URL is not a loopback or private address."""
        if not (self.supports_webhook and settings.WEBHOOKS_ENABLED):
            return False
        return self.is_sandbox or _publicly_reachable(settings.PUBLIC_BASE_URL)

    def poll_delay(self, poll_count: int) -> float:
        # With a webhook on its way, polling is only the fallback: slower, so it does
        # not compete with the deliveries it backs up.
        if self.webhooks_enabled:
            return min(2.0 + poll_count, 8.0)
        return super().poll_delay(poll_count)
