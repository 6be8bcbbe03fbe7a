"""The graph model: node labels, relationship types and engagement kinds.

Neo4j model::

    (:User {id})-[:FOLLOWS {ts}]->(:User {id})
    (:User {id})-[:POSTED]->(:Tweet {id, created_at, text})
    (:User {id})-[:LIKED|RETWEETED|REPLIED|QUOTED|ENGAGED {ts, weight}]->(:Tweet {id})

Ids are non-negative 64-bit integers; users and tweets have separate id spaces.
Timestamps are integer seconds since the epoch (0 = unknown).
"""

from __future__ import annotations

#: Engagement kinds and their int8 codes in snapshots. ``engage`` is the generic
#: kind used by datasets that only say "this user interacted with this item".
KINDS: dict[str, int] = {"like": 0, "retweet": 1, "reply": 2, "quote": 3, "engage": 4}
KIND_NAMES: dict[int, str] = {v: k for k, v in KINDS.items()}

#: Relationship type of each engagement kind in Neo4j.
KIND_REL_TYPES: dict[str, str] = {
    "like": "LIKED",
    "retweet": "RETWEETED",
    "reply": "REPLIED",
    "quote": "QUOTED",
    "engage": "ENGAGED",
}

#: Default weight of each kind, used when an event carries no weight.
DEFAULT_KIND_WEIGHTS: dict[str, float] = {
    "like": 1.0,
    "retweet": 2.0,
    "reply": 3.0,
    "quote": 2.5,
    "engage": 1.0,
}

MAX_ID = 2**63 - 1
