import secrets
import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse


def new_webhook_token() -> str:
    return secrets.token_urlsafe(24)


class JobQuerySet(models.QuerySet):
    def for_user(self, user):
        """Jobs of the user's teams: the only way views reach jobs."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(team__memberships__user=user)

    def active(self):
        return self.filter(state__in=Job.ACTIVE_STATES)


class Job(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        SUBMITTING = "submitting", "Submitting"
        RUNNING = "running", "Running"
        FETCHING = "fetching", "Fetching result"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"
        # Quoted above the team's approval limit: holds its quote until a manager decides.
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"

    ACTIVE_STATES = (State.QUEUED, State.SUBMITTING, State.RUNNING, State.FETCHING)
    FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELED)

    team = models.ForeignKey("billing.Team", on_delete=models.PROTECT, related_name="jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="jobs"
    )
    # Jobs submitted together (several images and/or several providers) share a batch.
    batch = models.UUIDField(default=uuid.uuid4, db_index=True)
    source_job = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="reruns"
    )
    provider = models.CharField(max_length=20)
    options = models.JSONField(default=dict)
    sandbox = models.BooleanField(default=False)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)

    # The client's file name is for display only; stored files get server-made names.
    input_name = models.CharField(max_length=255)
    input_file = models.FileField(max_length=200)
    input_thumb = models.FileField(max_length=200, blank=True)
    input_format = models.CharField(max_length=10)
    input_width = models.PositiveIntegerField()
    input_height = models.PositiveIntegerField()
    input_bytes = models.PositiveBigIntegerField()

    predicted_width = models.PositiveIntegerField(null=True, blank=True)
    predicted_height = models.PositiveIntegerField(null=True, blank=True)
    # The quote held against the budget when the job was accepted.
    quoted_amount = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    quote_explanation = models.CharField(max_length=300, blank=True)
    price_book = models.ForeignKey(
        "billing.PriceBook", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    output_file = models.FileField(max_length=200, blank=True)
    output_thumb = models.FileField(max_length=200, blank=True)
    output_format = models.CharField(max_length=10, blank=True)
    output_width = models.PositiveIntegerField(null=True, blank=True)
    output_height = models.PositiveIntegerField(null=True, blank=True)
    output_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    # Files are kept RETENTION_DAYS after the job finished (jobs/retention.py): then they
    # are deleted, the four file fields cleared, and this set; the row stays.
    files_expired_at = models.DateTimeField(null=True, blank=True)
    # Jobs share an input file (a batch sent to several providers, "run again"): the one
    # job per stored input that counts its bytes in a team's stored total, so the file
    # is counted once. The purge hands the part on when it keeps a shared input.
    input_owner = models.BooleanField(default=True)

    # Provider side: once a task id is recorded the job is never submitted again.
    provider_task_id = models.CharField(max_length=200, blank=True)
    webhook_token = models.CharField(max_length=64, default=new_webhook_token, editable=False)
    # When the tracker should act next: poll a running job, resubmit a queued one after a
    # 429/5xx, retry a failed download. NULL: nothing scheduled.
    next_poll_at = models.DateTimeField(null=True, blank=True)
    poll_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)  # submit attempts so far
    errors_in_row = models.PositiveSmallIntegerField(default=0)  # retryable errors in a row
    # When the current run of retryable failures (429, 5xx, no connection, a worker lost
    # mid-step) began; NULL once a call goes through. Retries stop RETRY_BUDGET_SECONDS
    # after it.
    retrying_since = models.DateTimeField(null=True, blank=True)
    # Where the provider left the result. Such links expire: downloaded at once.
    result_url = models.TextField(blank=True)

    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)

    # Recovery by lease: which process holds the job's current step, and until when. A
    # step whose lease has run out is taken over (a queued job is sent again, a download
    # tried again); a submit is never sent blind a second time.
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Billing(models.TextChoices):
        NONE = "", "Nothing outstanding"
        POSSIBLY_BILLED = "possibly_billed", "Possibly billed"
        CHARGED = "charged", "Resolved: charged"
        NOT_BILLED = "not_billed", "Resolved: not billed"

    # A job the provider may have done (and billed) but we could not finish keeps its
    # hold open as "possibly billed" until an admin resolves it, with a reason.
    billing_status = models.CharField(
        max_length=20, choices=Billing.choices, blank=True, default=""
    )
    billing_resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    billing_resolved_at = models.DateTimeField(null=True, blank=True)
    billing_resolution = models.TextField(blank=True)

    # "Keep this one": the result a person chose among a batch's results for one image.
    kept = models.BooleanField(default=False)
    kept_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # A person deleted the job's files (its row, timeline and ledger rows stay).
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # The submitter asked for an e-mail when the batch ends (sent only for long batches).
    email_when_done = models.BooleanField(default=False)

    # The input's content (sha256 of the stored bytes): the same image, provider and
    # options as a succeeded job of the team can reuse its result for free.
    input_sha256 = models.CharField(max_length=64, blank=True)
    reused_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="reuses"
    )
    # API: the token that created the job (its webhook secret signs the events) and where
    # to POST them when the job ends.
    api_token = models.ForeignKey(
        "jobs.ApiToken", on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs"
    )
    webhook_url = models.TextField(blank=True)
    # The Idempotency-Key claim of the API call that made the job, written in the same
    # transaction: a call killed before it stored its answer is answered from its jobs.
    idempotent_request = models.ForeignKey(
        "jobs.IdempotentRequest",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="jobs",
    )
    # Approval above the team's limit: who decided, when, and why.
    approval_decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    approval_decided_at = models.DateTimeField(null=True, blank=True)
    approval_reason = models.CharField(max_length=200, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            # History, newest first, a page at a time from a (created_at, id) cursor: one
            # team's jobs, and all of them (a user in most teams; staff).
            models.Index(fields=["team", "-created_at", "-id"], name="job_team_history"),
            models.Index(fields=["-created_at", "-id"], name="job_history"),
            # PostgreSQL also has job_name_trgm, the trigram index for searching names
            # (migration 0012: PostgreSQL only, so it is not declared here).
            models.Index(fields=["state", "next_poll_at"], name="job_due_polls"),
            models.Index(fields=["state", "lease_expires_at"], name="job_leases"),
            models.Index(
                fields=["team", "billing_status"],
                name="job_possibly_billed",
                condition=models.Q(billing_status="possibly_billed"),
            ),
            # The purge's batches: jobs that still have files, oldest finish first.
            models.Index(
                fields=["finished_at", "id"],
                name="job_files_to_expire",
                condition=models.Q(files_expired_at__isnull=True),
            ),
            # Is a shared input still used by a job the purge keeps?
            models.Index(fields=["input_file"], name="job_input_file"),
            # Reuse: a succeeded job of the team with the same input content.
            models.Index(
                fields=["team", "input_sha256"],
                name="job_same_input",
                condition=models.Q(state="succeeded"),
            ),
            # Each team's stored bytes (the spend page), read from the index alone.
            models.Index(
                fields=["team", "input_owner", "input_bytes", "output_bytes"],
                name="job_stored_bytes",
                condition=models.Q(files_expired_at__isnull=True),
            ),
        ]

    def __str__(self):
        return f"Job {self.pk} ({self.provider}, {self.state})"

    def get_absolute_url(self):
        return reverse("jobs:detail", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @property
    def files_kept_days(self) -> int | None:
        """After how many days (from its finish) the job's files were deleted."""
        if self.files_expired_at and self.finished_at:
            return (self.files_expired_at - self.finished_at).days
        return None

    @property
    def files_expired_note(self) -> str:
        """What the job's page (and its file links) say once its files were deleted."""
        if not self.files_expired_at:
            return ""
        days, keep = self.files_kept_days, settings.RETENTION_DAYS
        after = f" after {days} day{'' if days == 1 else 's'}" if days is not None else ""
        policy = f", as this portal keeps files for {keep} days" if keep else ""
        return (
            f"The files of this job were deleted on {self.files_expired_at:%Y-%m-%d}"
            f"{after}{policy}. Its history and cost stay."
        )

    @property
    def duration(self):
        if self.finished_at:
            return self.finished_at - self.created_at
        return None

    @property
    def charge(self):
        """The ledger's charge for this job, once it succeeded."""
        prefetched = getattr(self, "_prefetched_objects_cache", {}).get("ledger")
        if prefetched is not None:  # lists prefetch the ledger: no query a row
            return next((e for e in prefetched if e.kind == "charge"), None)
        return self.ledger.filter(kind="charge").select_related("price_book").first()

    @property
    def price(self):
        """What the job costs: its charge once charged, its quote until then."""
        from billing.pricing import Quote

        charge = self.charge
        verified = self.price_book.verified if self.price_book_id else True
        if charge:
            return Quote(charge.amount, "charged", charge.explanation, verified)
        return Quote(self.quoted_amount, "quoted", self.quote_explanation, verified)

    @property
    def compare_width(self) -> int:
        return max(self.output_width or 0, 480)

    @property
    def provider_obj(self):
        from jobs.providers import get_provider

        return get_provider(self.provider)

    @property
    def options_label(self) -> str:
        try:
            return self.provider_obj.describe(self.options)
        except KeyError:
            return ", ".join(f"{k}={v}" for k, v in self.options.items())


class WebhookDelivery(models.Model):
    """Each distinct webhook body once: the unique constraint, not a check-then-insert,
    is what makes a duplicate delivery change nothing."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="webhooks")
    digest = models.CharField(max_length=64)
    hint = models.CharField(max_length=200, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "digest"], name="one_delivery_per_body")
        ]

    def __str__(self):
        return f"webhook for job {self.job_id} at {self.received_at:%H:%M:%S}"


class Heartbeat(models.Model):
    """A long-running process saying it is alive (the tracker, once a tick; each cluster
    supervisor, with what it measured), or a periodic job saying it ran ("purge", with
    what it deleted)."""

    name = models.CharField(max_length=100, unique=True)
    beat_at = models.DateTimeField()
    detail = models.JSONField(default=dict, blank=True)

    def __str__(self):
        return f"{self.name} at {self.beat_at:%H:%M:%S}"


class JobEvent(models.Model):
    """One row per state change: the job page's timeline."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    state = models.CharField(max_length=20, choices=Job.State.choices)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self):
        return f"{self.job_id} -> {self.state} at {self.at:%H:%M:%S}"


class BatchEmail(models.Model):
    """A batch's "it is done" e-mail, once: the unique batch, not a check-then-send, is
    what keeps a retried task or two finishing jobs from sending it twice."""

    batch = models.UUIDField(unique=True)
    to = models.EmailField()
    sent_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"batch {self.batch} mailed to {self.to}"


class Preset(models.Model):
    """A named provider + options set a team saves on the upload page and picks again."""

    team = models.ForeignKey("billing.Team", on_delete=models.CASCADE, related_name="presets")
    name = models.CharField(max_length=60)
    # [[provider slug, {option: value}], ...]: what provider_choices_from() reads.
    choices = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="one_preset_name_per_team")
        ]

    def __str__(self):
        return f"{self.name} ({self.team})"


class ApiToken(models.Model):
    """A personal API token: acts as its user, within that user's teams and budgets.
    Only a digest of the secret is stored (shown once at creation); `prefix` names it in
    lists and logs. Its webhook signing secret is derived from SECRET_KEY (api/tokens.py),
    so no signing secret is stored either."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=60)
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64, unique=True)  # sha256 of the whole token
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # The rate limit's count when there is no Redis (jobs/api/auth.py): requests made in
    # the clock minute `rate_window` (minutes since the epoch).
    rate_window = models.PositiveIntegerField(default=0)
    rate_count = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"


class IdempotentRequest(models.Model):
    """The first answer to a create sent with an Idempotency-Key, replayed for 24 h to the
    same user with the same key and body (Stripe's semantics)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_digest = models.CharField(max_length=64)  # sha256 of method, path and body
    status = models.PositiveSmallIntegerField(null=True, blank=True)  # None: in progress
    body = models.TextField(blank=True)  # the JSON answer (job data only, never a secret)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="one_answer_per_idempotency_key")
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_age")]

    def __str__(self):
        return f"{self.key} ({self.status})"


class EventDelivery(models.Model):
    """One outbound webhook event (a job or a batch ended) to a URL a user named, signed
    per Standard Webhooks; retried with backoff until delivered or given up."""

    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries"
    )
    batch = models.UUIDField(null=True, blank=True, db_index=True)
    token = models.ForeignKey(ApiToken, on_delete=models.SET_NULL, null=True, related_name="+")
    url = models.TextField()
    event_type = models.CharField(max_length=40)  # "job.succeeded", "batch.ended", ...
    message_id = models.CharField(max_length=64, unique=True)  # webhook-id: msg_...
    payload = models.JSONField(default=dict)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    gave_up_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due",
                condition=models.Q(delivered_at__isnull=True, gave_up_at__isnull=True),
            )
        ]

    def __str__(self):
        return f"{self.event_type} to {self.url} ({self.message_id})"
