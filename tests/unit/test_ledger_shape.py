"""The ledger unpacks rows positionally, so FileRecord must mirror the table exactly."""

from __future__ import annotations

from app.ledger import FileRecord
from app.models import files_table


def test_file_record_fields_follow_the_table_columns_in_order() -> None:
    assert tuple(FileRecord.__dataclass_fields__) == tuple(files_table.c.keys())
