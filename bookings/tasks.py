from celery import shared_task

from bookings.services import expire_hold, overdue_hold_ids, pending_refund_ids, refund_late_payment


@shared_task(name="bookings.tasks.expire_hold")
def expire_hold_task(booking_id: int) -> str:
    return expire_hold(booking_id=booking_id)


@shared_task(name="bookings.tasks.expire_holds")
def expire_holds_task(booking_ids: list[int]) -> list[str]:
    return [expire_hold(booking_id=booking_id) for booking_id in booking_ids]


@shared_task(name="bookings.tasks.sweep_overdue_holds")
def sweep_overdue_holds() -> int:
    """Expire holds whose countdown task was lost (worker crash, broker flush),
    and retry refunds that failed. Each step is idempotent, so running beside
    the countdown tasks is harmless."""
    ids = overdue_hold_ids()
    for booking_id in ids:
        expire_hold(booking_id=booking_id)
    for booking_id in pending_refund_ids():
        refund_late_payment(booking_id=booking_id)
    return len(ids)
