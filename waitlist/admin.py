from django.contrib import admin

from waitlist.models import AccessToken, QueueEntry, WaitingRoom


@admin.register(WaitingRoom)
class WaitingRoomAdmin(admin.ModelAdmin):
    list_display = ("event", "serving_number", "paused", "max_admissions_per_tick", "admission_rate", "opened_at")
    list_editable = ("paused", "max_admissions_per_tick")
    readonly_fields = (
        "event",
        "serving_number",
        "opened_at",
        "shuffle_seed",
        "pre_queue_size",
        "admission_rate",
        "last_admitted_at",
        "updated_at",
    )

    def has_add_permission(self, request):
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


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin):
    list_display = ("id", "event", "fan", "issued_at", "expires_at", "used_at")
    list_filter = ("event",)
    search_fields = ("fan__email",)
    readonly_fields = ("id", "entry", "event", "fan", "issued_at", "expires_at", "used_at")

    def has_add_permission(self, request):
        return False
