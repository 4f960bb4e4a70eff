from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("waitlist", "0002_hot_path_indexes")]

    operations = [
        # A cap per tick was no rate: every wake-up between ticks admitted
        # another batch. The cap is now fans per minute.
        migrations.RemoveField(model_name="waitingroom", name="max_admissions_per_tick"),
        migrations.AddField(
            model_name="waitingroom",
            name="admissions_per_minute",
            field=models.PositiveIntegerField(
                default=0, help_text="Most fans admitted per minute; 0 admits as fast as the tickets allow."
            ),
        ),
    ]
