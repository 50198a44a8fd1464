"""An ORM lookup Airlock corrects: `__in` on an integer column, given integers no such
column can hold.

Django leaves those out of exact, gt, gte, lt and lte lookups (ticket #27397: SQLite raised
OverflowError, and PostgreSQL scanned the whole table), but not out of `__in`, which the
admin feeds straight from the request: a ModelMultipleChoiceField's chosen ids, the rows an
action is run on. Such a value can match no row, so it is left out; with nothing left, the
lookup matches nothing, as Django's own do. Registered when the admin app is ready
(portal.apps).
"""

from django.db.models import IntegerField
from django.db.models.lookups import In


@IntegerField.register_lookup
class IntegerFieldIn(In):
    def process_rhs(self, compiler, connection):
        if self.rhs_is_direct_value():
            low, high = connection.ops.integer_field_range(
                self.lhs.output_field.get_internal_type()
            )
            self.rhs = [
                value
                for value in self.rhs
                if not isinstance(value, int)
                or ((low is None or value >= low) and (high is None or value <= high))
            ]
        return super().process_rhs(compiler, connection)
