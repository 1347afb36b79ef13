from django.conf import settings
from django.db import models, transaction
from django.utils import timezone


class Team(models.Model):
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    # Calendar month, UTC. Empty: no budget.
    monthly_budget = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="USD per calendar month (UTC)",
    )
    # Submissions quoted above this wait for a manager's approval. Empty: none wait.
    approval_threshold = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="USD: submissions quoted above it need a manager's approval",
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="teams"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        MANAGER = "manager", "Manager"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)
    # What this person may spend in the team per calendar month (UTC), like the team's
    # budget and checked beside it (billing/caps.py). Empty: no cap of their own.
    monthly_cap = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="USD per calendar month (UTC); empty: no cap",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team")
        ]

    def __str__(self):
        return f"{self.user} in {self.team} ({self.role})"


class TeamEvent(models.Model):
    """Who changed what in a team, from the team page (billing/members.py): budgets, caps,
    roles, invitations, removals. Append-only; written in the change's transaction.
    Budget edits made in the Django admin write none (staff's own tool)."""

    class Kind(models.TextChoices):
        BUDGET = "budget", "Budget"
        APPROVAL = "approval", "Approval limit"
        CAP = "cap", "Member cap"
        ROLE = "role", "Role"
        INVITE = "invite", "Invitation"
        REMOVE = "remove", "Removal"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    text = models.CharField(max_length=300)  # never a link or a token: words only
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["team", "created_at"], name="team_event_team_time")]

    def __str__(self):
        return self.text

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Team events are never edited.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Team events are never deleted.")


class PriceBook(models.Model):
    """One provider's prices from a date on. Versions are never edited: a new price is a
    new version, and each charge names the version that priced it."""

    provider = models.CharField(max_length=20)
    version = models.PositiveIntegerField()
    effective_from = models.DateTimeField()
    rule = models.JSONField(help_text="pricing rule as data; see billing/pricing.py")
    verified = models.BooleanField(default=True, help_text="false: price assumed")
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider", "-effective_from", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "version"], name="one_version_number")
        ]

    def __str__(self):
        return f"{self.provider} v{self.version} from {self.effective_from:%Y-%m-%d}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Price books are never edited: add a new version.")
        super().save(*args, **kwargs)


class LedgerQuerySet(models.QuerySet):
    """The portal never edits ledger rows (LedgerEntry.save() refuses); a test's rewind or
    a hand-made fix through update() keeps the rollups exact all the same: the cells and
    holds of the rows it touched are recomputed, in its transaction."""

    def update(self, **kwargs):
        from billing import rollups

        with transaction.atomic(using=self.db, savepoint=False):
            before = list(self.order_by().values(*rollups.ROW_FIELDS))
            count = super().update(**kwargs)
            pks = [row["pk"] for row in before]
            after = self.model._base_manager.using(self.db).filter(pk__in=pks)
            rollups.refresh(before + list(after.values(*rollups.ROW_FIELDS)), using=self.db)
        return count

    update.alters_data = True

    def bulk_create(self, objs, *args, **kwargs):
        """Rows and their rollups, in one transaction (no conflict options: a skipped
        row could not be told from a written one)."""
        from billing import rollups

        if kwargs.get("ignore_conflicts") or kwargs.get("update_conflicts"):
            raise ValueError("Ledger rows are written once: no ignore or update on conflict.")
        with transaction.atomic(using=self.db, savepoint=False):
            created = super().bulk_create(objs, *args, **kwargs)
            rollups.record_many(created, using=self.db)
        return created

    bulk_create.alters_data = True


class LedgerEntry(models.Model):
    """Append-only money movements. Rows are never updated or deleted; a correction is
    a new row. The idempotency key makes a retried task or a duplicate webhook unable to
    hold, charge or release twice."""

    class Kind(models.TextChoices):
        HOLD = "hold", "Hold"
        CHARGE = "charge", "Charge"
        RELEASE = "release", "Release"
        CORRECTION = "correction", "Correction"

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="ledger")
    job = models.ForeignKey(
        "jobs.Job", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    provider = models.CharField(max_length=20)
    amount = models.DecimalField(max_digits=12, decimal_places=4)  # USD
    sandbox = models.BooleanField(default=False)
    price_book = models.ForeignKey(PriceBook, on_delete=models.PROTECT, null=True, blank=True)
    explanation = models.CharField(max_length=300, blank=True)
    idempotency_key = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = LedgerQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["team", "created_at"], name="ledger_team_time"),
            # usage(): one month's charges and every open hold of a team, in one query.
            models.Index(fields=["team", "kind", "created_at"], name="ledger_team_kind_time"),
        ]

    def __str__(self):
        return f"{self.kind} {self.amount} for job {self.job_id}"

    def save(self, *args, **kwargs):
        """Insert the row and, in the same transaction, bring the rollups up to date
        (billing/rollups.py): every way a row is written (ledger.py, an admin, a test)
        goes through here, and a refused duplicate writes nothing to them either."""
        if self.pk is not None:
            raise ValueError("Ledger rows are never edited: add a correction.")
        from billing import rollups

        with transaction.atomic(using=kwargs.get("using"), savepoint=False):
            super().save(*args, **kwargs)
            rollups.record(self)

    def delete(self, *args, **kwargs):
        raise ValueError("Ledger rows are never deleted.")


class DailySpend(models.Model):
    """Rollup of the ledger's charge rows (charges and corrections): their sum and number
    per UTC day, team, person, provider and sandbox flag. Kept in the transaction that
    writes each row (billing/rollups.py), so spend totals never read the ledger.

    `user_key` is the person's id when the row was written (0: no one): the key, which a
    nullable column cannot be on every database. Deleting the person sets `user` to
    NULL and leaves the key, so their cells stay apart and still add up."""

    day = models.DateField()
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    user_key = models.BigIntegerField(default=0)
    provider = models.CharField(max_length=20)
    sandbox = models.BooleanField(default=False)
    amount = models.DecimalField(max_digits=14, decimal_places=4, default=0)  # USD
    count = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "daily spend"
        constraints = [
            models.UniqueConstraint(
                fields=["day", "team", "user_key", "provider", "sandbox"],
                name="one_daily_spend_cell",
            )
        ]
        indexes = [models.Index(fields=["team", "day"], name="daily_spend_team_day")]

    def __str__(self):
        return f"{self.day} {self.team_id} {self.provider}: {self.amount} ({self.count})"


class OpenHold(models.Model):
    """A hold whose job has no release yet: inserted with the hold row, deleted when the
    release is written (billing/rollups.py). Not the ledger (which stays append-only):
    budgets read what is held here instead of anti-joining the ledger."""

    entry = models.OneToOneField(
        LedgerEntry, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    job = models.ForeignKey(
        "jobs.Job", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    provider = models.CharField(max_length=20)
    amount = models.DecimalField(max_digits=12, decimal_places=4)  # USD
    sandbox = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    def __str__(self):
        return f"hold {self.amount} for job {self.job_id}"


class BudgetWarning(models.Model):
    """A warning e-mailed once per team, month and threshold."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="warnings")
    period = models.DateField()  # first day of the month
    threshold = models.PositiveSmallIntegerField()  # percent
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "period", "threshold"], name="one_warning_per_threshold"
            )
        ]

    def __str__(self):
        return f"{self.team} {self.threshold}% {self.period:%Y-%m}"
