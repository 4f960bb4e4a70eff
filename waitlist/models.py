import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class WaitingRoom(models.Model):
    """Per-event admission state: the serving number and the pre-queue audit.

    Every queue entry with `number <= serving_number` has been admitted. Only
    one admitter at a time moves it (row lock, skip-locked), and only up.
    Queue numbers come from a per-event Postgres sequence (no hot row on join),
    so they are dense and a fan's position is `number - serving_number`.
    """

    event = models.OneToOneField("ticketing.Event", on_delete=models.CASCADE, related_name="waiting_room")
    serving_number = models.BigIntegerField(default=0)
    # Set once, when the sale opens and the pre-queue is shuffled.
    opened_at = models.DateTimeField(null=True, blank=True)
    shuffle_seed = models.CharField(max_length=64, blank=True)
    pre_queue_size = models.IntegerField(default=0)
    paused = models.BooleanField(default=False)
    # Staff cap on the admission rate; 0 means "as fast as inventory allows".
    admissions_per_minute = models.PositiveIntegerField(
        default=0, help_text="Most fans admitted per minute; 0 admits as fast as the tickets allow."
    )
    # Fans admitted but not yet booked (live, unused tokens) at once. Each of
    # them is about to ask for a booking, so this bounds the crowd at
    # checkout: admitting everyone the tickets allow would send thousands of
    # booking requests at once, and tokens would run out while their holders
    # queue for the booking path.
    checkout_limit = models.PositiveIntegerField(
        default=1000,
        help_text="Most admitted fans who have not booked yet, at once (0: no ceiling). Under it the admitter keeps "
        "its own checkout window: it starts at 50, narrows while checkout answers slowly (never below 20) and "
        "widens while it is quick and in use. Fans admitted at once = the smaller of the two.",
    )
    # Under that limit, the window checkout can serve quickly now, found by
    # the admitter (waitlist.pacing); 0 until the sale's first admission.
    checkout_window = models.PositiveIntegerField(
        "checkout window now",
        default=0,
        help_text="Set by the admitter: how many admitted fans may be choosing at once now, as many as checkout "
        "serves quickly (up to the checkout limit). It widens only while it is in use, so an idle room shows "
        "where it last was.",
    )
    checkout_window_at = models.DateTimeField(null=True, blank=True)
    # Under that cap: the moment up to which admission credit has been spent.
    rate_credit_at = models.DateTimeField(null=True, blank=True)
    # Smoothed fans admitted per second, for the ETA shown to waiting fans.
    admission_rate = models.FloatField(default=0.0)
    last_admitted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(serving_number__gte=0), name="room_serving_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"waiting room of event {self.event_id}"

    @property
    def sequence_name(self) -> str:
        return f"waitlist_event_{self.event_id}_numbers"


class QueueEntry(models.Model):
    """One fan's place in one event's line (at most one live entry per fan)."""

    class State(models.TextChoices):
        WAITING = "waiting"
        ADMITTED = "admitted"  # holds an access token (see AccessToken for expiry)
        BOOKED = "booked"
        LEFT = "left"

    # Lookups by event use the composite indexes below, which start with it.
    event = models.ForeignKey("ticketing.Event", on_delete=models.CASCADE, related_name="queue_entries", db_index=False)
    fan = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="queue_entries")
    # Null while in the pre-queue (joined before the sale opened).
    number = models.BigIntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.WAITING)
    joined_at = models.DateTimeField(auto_now_add=True)
    admitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "queue entries"
        constraints = [
            models.UniqueConstraint(fields=["event", "fan"], name="queue_one_entry_per_fan_per_event"),
            models.UniqueConstraint(fields=["event", "number"], name="queue_unique_number_per_event"),
        ]
        indexes = [models.Index(fields=["event", "state", "number"], name="queue_event_state_number")]

    def __str__(self) -> str:
        return f"{self.fan} in line for {self.event_id} (#{self.number})"


class AccessToken(models.Model):
    """The server-side record of an admission: single use, fan- and event-bound.

    The fan holds a signed string naming this row; the row decides whether it
    is still good (not expired, not used).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    entry = models.ForeignKey(QueueEntry, on_delete=models.CASCADE, related_name="tokens")
    # Lookups by event use token_event_outstanding, which starts with it.
    event = models.ForeignKey("ticketing.Event", on_delete=models.CASCADE, related_name="+", db_index=False)
    fan = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["event", "used_at", "expires_at"], name="token_event_outstanding")]

    def __str__(self) -> str:
        return f"token {self.id} for {self.fan_id} @ {self.event_id}"
