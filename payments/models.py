from django.db import models


class StripeEvent(models.Model):
    """Each Stripe event id, recorded once (primary key), with its outcome."""

    id = models.CharField(max_length=255, primary_key=True)
    type = models.CharField(max_length=100)
    payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    received_at = models.DateTimeField(auto_now_add=True)
    # What handling did, for staff reading the ledger ("succeeded", "ignored: ...").
    outcome = models.CharField(max_length=255, blank=True)
    # The body as Stripe sent it (text: jsonb refuses some escapes Stripe may send).
    payload = models.TextField()

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.id} {self.type}"
