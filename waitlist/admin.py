from django.contrib import admin, messages
from django.db.models import Count, Q
from django.utils import timezone

from waitlist import services
from waitlist.models import AccessToken, QueueEntry, WaitingRoom

State = QueueEntry.State


@admin.register(WaitingRoom)
class WaitingRoomAdmin(admin.ModelAdmin):
    list_display = (
        "event",
        "paused",
        "admissions_per_minute",
        "checkout_limit",
        "checkout_window",
        "serving_number",
        "waiting",
        "admitted",
        "booked",
        "measured_rate",
        "opened_at",
    )
    list_editable = ("admissions_per_minute", "checkout_limit")
    actions = ["pause", "resume"]
    readonly_fields = (
        "event",
        "paused",
        "checkout_window",
        "serving_number",
        "opened_at",
        "shuffle_seed",
        "pre_queue_size",
        "measured_rate",
        "last_admitted_at",
        "updated_at",
        "waiting",
        "admitted",
        "booked",
    )
    fields = ("admissions_per_minute", "checkout_limit", *readonly_fields)

    def get_queryset(self, request):
        # The counts are read fresh on every page load (one query for the list).
        return (
            super()
            .get_queryset(request)
            .select_related("event")
            .annotate(
                waiting_count=Count("event__queue_entries", filter=Q(event__queue_entries__state=State.WAITING)),
                admitted_count=Count("event__queue_entries", filter=Q(event__queue_entries__state=State.ADMITTED)),
                booked_count=Count("event__queue_entries", filter=Q(event__queue_entries__state=State.BOOKED)),
            )
        )

    @admin.display(description="admitting now", ordering="admission_rate")
    def measured_rate(self, obj):
        # Stored in fans per second (the ETA divides by it); staff think per minute.
        return f"{obj.admission_rate * 60:,.0f} fans/min"

    @admin.display(description="waiting", ordering="waiting_count")
    def waiting(self, obj):
        return obj.waiting_count

    @admin.display(description="admitted", ordering="admitted_count")
    def admitted(self, obj):
        return obj.admitted_count

    @admin.display(description="booked", ordering="booked_count")
    def booked(self, obj):
        return obj.booked_count

    @admin.action(description="Pause admission (fans keep their places)")
    def pause(self, request, queryset):
        changed = services.set_paused(event_ids=list(queryset.values_list("event_id", flat=True)), paused=True)
        self.message_user(request, f"Paused {changed} waiting room(s).", messages.SUCCESS)

    @admin.action(description="Resume admission")
    def resume(self, request, queryset):
        changed = services.set_paused(event_ids=list(queryset.values_list("event_id", flat=True)), paused=False)
        self.message_user(request, f"Resumed {changed} waiting room(s).", messages.SUCCESS)

    def save_model(self, request, obj, form, change):
        # Only the staff fields: the admitter moves the rest of this row
        # while the form is open, and a whole-row save would undo its work.
        changed = [name for name in form.changed_data if name in ("admissions_per_minute", "checkout_limit")]
        if changed:
            values = {name: getattr(obj, name) for name in changed}
            WaitingRoom.objects.filter(pk=obj.pk).update(**values, updated_at=timezone.now())
            services.limits_changed(event_id=obj.event_id)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(QueueEntry)
class QueueEntryAdmin(admin.ModelAdmin):
    list_display = ("event", "fan", "number", "state", "joined_at", "admitted_at")
    list_filter = ("state", "event")
    search_fields = ("fan__email",)
    ordering = ("event", "number")
    readonly_fields = ("event", "fan", "number", "state", "joined_at", "admitted_at")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a fan's place is theirs: they leave the line themselves


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin):
    list_display = ("id", "event", "fan", "issued_at", "expires_at", "used_at")
    list_filter = ("event",)
    search_fields = ("fan__email",)
    readonly_fields = ("id", "entry", "event", "fan", "issued_at", "expires_at", "used_at")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the record that makes a token single use
