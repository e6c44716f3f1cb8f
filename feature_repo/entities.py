"""The entities: who a feature row describes."""

from feast import Entity, ValueType

OWNER = "ml-platform@churnfs.example.com"

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.INT64,
    description="A customer account of the shop; user_id is the account id from user_table (1..USERS).",
    owner=OWNER,
    tags={"team": "ml-platform", "domain": "customers"},
)
