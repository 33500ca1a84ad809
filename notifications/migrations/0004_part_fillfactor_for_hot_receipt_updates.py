"""Leave room in each page of the parts table so a receipt's state change is a HOT
update (no new entry in the part's four indexes): a part is inserted once and updated
by its receipt(s) shortly after, while its page is still hot. Affects pages written from
now on; no rewrite of existing rows."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0003_claim_index"),
    ]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE notifications_messagepart SET (fillfactor = 70)",
            reverse_sql="ALTER TABLE notifications_messagepart RESET (fillfactor)",
        ),
    ]
