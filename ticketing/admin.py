from django.contrib import admin, messages
from django.db import transaction

from ticketing import services
from ticketing.models import Event, InventoryBucket
from ticketing.selectors import event_status, events_with_inventory


class InventoryBucketInline(admin.TabularInline):
    model = InventoryBucket
    extra = 0
    can_delete = False
    fields = ("index", "capacity", "available", "held", "sold")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "starts_at",
        "on_sale_at",
        "price",
        "currency",
        "capacity",
        "available",
        "held",
        "sold",
        "status",
        "sale_closed",
    )
    list_filter = ("sale_closed",)
    search_fields = ("name", "slug", "venue")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [InventoryBucketInline]
    actions = ["close_sale", "reopen_sale"]

    def get_queryset(self, request):
        return events_with_inventory()

    def get_readonly_fields(self, request, obj=None):
        # Capacity lives in the inventory buckets once the event exists;
        # changing it goes through add_tickets so the counts stay consistent.
        return ("capacity",) if obj else ()

    @admin.display(description="available")
    def available(self, obj):
        return obj.total_available

    @admin.display(description="held")
    def held(self, obj):
        return obj.total_held

    @admin.display(description="sold")
    def sold(self, obj):
        return obj.total_sold

    @admin.display(description="status")
    def status(self, obj):
        return event_status(event=obj, available=obj.total_available, held=obj.total_held)

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if not change:
                services.provision_event(event=obj)

    @admin.action(description="Close the sale (admit and book no more)")
    def close_sale(self, request, queryset):
        count = queryset.update(sale_closed=True)
        self.message_user(request, f"Closed {count} sale(s).", messages.SUCCESS)

    @admin.action(description="Reopen the sale")
    def reopen_sale(self, request, queryset):
        count = queryset.update(sale_closed=False)
        self.message_user(request, f"Reopened {count} sale(s).", messages.SUCCESS)


@admin.register(InventoryBucket)
class InventoryBucketAdmin(admin.ModelAdmin):
    list_display = ("event", "index", "capacity", "available", "held", "sold")
    list_filter = ("event",)
    readonly_fields = ("event", "index", "capacity", "available", "held", "sold")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
