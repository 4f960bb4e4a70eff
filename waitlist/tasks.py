from celery import shared_task
from django.utils import timezone

from ticketing.models import Event
from waitlist.services import admit_fans


@shared_task(name="waitlist.tasks.admit_fans")
def admit_fans_task(event_id: int) -> int:
    return admit_fans(event_id=event_id)


@shared_task(name="waitlist.tasks.admission_tick")
def admission_tick() -> None:
    """Safety net: admit for every event whose sale may be running.

    Wake-ups (returned tickets, joins to an empty line) make admission quick;
    this makes it certain, and opens sales whose on-sale time has come.
    """
    now = timezone.now()
    for event_id in Event.objects.filter(sale_closed=False, on_sale_at__lte=now, starts_at__gt=now).values_list(
        "id", flat=True
    ):
        admit_fans(event_id=event_id)
