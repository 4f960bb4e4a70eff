from django import forms
from django.contrib import admin, messages
from django.db import transaction

from ticketing import services
from ticketing.errors import ServiceError
from ticketing.models import Event, InventoryBucket
from ticketing.selectors import event_inventory, event_status, events_with_inventory


class InventoryBucketInline(admin.TabularInline):
    model = InventoryBucket
    extra = 0
    can_delete = False
    fields = ("index", "capacity", "available", "held", "sold")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class EventForm(forms.ModelForm):
    # Capacity lives in the inventory buckets once the event exists: staff
    # change it by a number of tickets, which change_tickets applies under
    # lock, never by saving a new total over the bookings made meanwhile.
    tickets_change = forms.IntegerField(
        required=False,
        initial=0,
        label="Add or withdraw tickets",
        help_text="A positive number puts that many more tickets on sale; a negative one withdraws that many "
        "available tickets (held and sold tickets stay).",
    )

    class Meta:
        model = Event
        fields = [
            "slug",
            "name",
            "venue",
            "starts_at",
            "on_sale_at",
            "price",
            "currency",
            "capacity",
            "max_per_order",
            "sale_closed",
        ]

    def clean_tickets_change(self):
        change = self.cleaned_data.get("tickets_change") or 0
        if change and self.instance.pk is None:
            raise forms.ValidationError("Set the capacity of a new event instead.")
        if change < 0:
            available = event_inventory(event_id=self.instance.pk).available
            if available < -change:
                raise forms.ValidationError(
                    f"Only {available} tickets are available to withdraw; held and sold tickets stay."
                )
        if change > 2**31 - 1 - (self.instance.capacity or 0):
            raise forms.ValidationError("That would take the capacity past what an event can hold.")
        return change


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    form = EventForm
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
        return ("capacity",) if obj else ()

    def get_fields(self, request, obj=None):
        fields = [name for name in super().get_fields(request, obj) if name != "tickets_change"]
        return [*fields, "tickets_change"] if obj else fields

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
            if not change:
                super().save_model(request, obj, form, change)
                services.provision_event(event=obj)
                return
            # Tickets first, the other fields after: saving a new slug locks
            # the event row against the key share a booking's insert needs,
            # and taken before change_tickets waits for a bucket a booking
            # holds, that booking and this save would wait on each other.
            by = form.cleaned_data.get("tickets_change") or 0
            try:
                services.change_tickets(event_id=obj.pk, by=by)
            except ServiceError as exc:  # tickets reserved since the form was checked
                self.message_user(request, f"Tickets not changed: {exc.detail}", messages.ERROR)
            else:
                if by:
                    verb = "Put" if by > 0 else "Withdrew"
                    self.message_user(request, f"{verb} {abs(by)} tickets {'on sale' if by > 0 else 'from sale'}.")
            # Only what staff changed: the row's capacity may have moved
            # since the form was loaded (another edit's tickets).
            changed = [name for name in form.changed_data if name not in ("tickets_change", "capacity")]
            if changed:
                Event.objects.filter(pk=obj.pk).update(**{name: getattr(obj, name) for name in changed})

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
