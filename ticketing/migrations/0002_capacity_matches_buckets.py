from django.db import migrations

# An event's capacity must equal the sum of its buckets' capacities: the
# API, the admin and the on-sale report all read it, and only
# ticketing.services.change_tickets (and a consolidation, which moves
# capacity between buckets) may change either. Checked at commit (deferred),
# so both sides can change in one transaction in either order; a direct save
# of a new capacity (a bug, a shell) is refused instead of leaving the
# totals disagreeing. Reservations never write `capacity`, so the hot path
# does not fire it.
CREATE = """
CREATE FUNCTION ticketing_check_event_capacity() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    checked_event bigint;
    expected bigint;
    total bigint;
BEGIN
    IF TG_TABLE_NAME = 'ticketing_event' THEN
        checked_event := NEW.id;
    ELSIF TG_OP = 'DELETE' THEN
        checked_event := OLD.event_id;
    ELSE
        checked_event := NEW.event_id;
    END IF;
    SELECT capacity INTO expected FROM ticketing_event WHERE id = checked_event;
    IF NOT FOUND THEN
        RETURN NULL;  -- the event itself was deleted
    END IF;
    SELECT COALESCE(SUM(capacity), 0) INTO total FROM ticketing_inventorybucket WHERE event_id = checked_event;
    IF total <> expected THEN
        RAISE EXCEPTION 'event % has capacity % but its inventory buckets hold %', checked_event, expected, total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'event_capacity_matches_buckets';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER event_capacity_matches_buckets
    AFTER UPDATE OF capacity ON ticketing_event
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ticketing_check_event_capacity();
CREATE CONSTRAINT TRIGGER bucket_capacity_matches_event
    AFTER INSERT OR DELETE OR UPDATE OF capacity ON ticketing_inventorybucket
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ticketing_check_event_capacity();
"""

DROP = """
DROP TRIGGER IF EXISTS bucket_capacity_matches_event ON ticketing_inventorybucket;
DROP TRIGGER IF EXISTS event_capacity_matches_buckets ON ticketing_event;
DROP FUNCTION IF EXISTS ticketing_check_event_capacity();
"""


class Migration(migrations.Migration):
    dependencies = [("ticketing", "0001_initial")]

    operations = [migrations.RunSQL(CREATE, DROP)]
