"""Every Cypher statement the project runs, in one place.

Statements take parameters only; nothing is built from user input. Where a
relationship type varies (engagement kinds) the statement is chosen from a fixed
table keyed by kind, never formatted from a caller's string.
"""

from __future__ import annotations

from graph.schema import KIND_REL_TYPES

ENGAGEMENT_TYPES = "|".join(KIND_REL_TYPES.values())

SCHEMA = [
    "CREATE CONSTRAINT user_id IF NOT EXISTS FOR (u:User) REQUIRE u.id IS UNIQUE",
    "CREATE CONSTRAINT tweet_id IF NOT EXISTS FOR (t:Tweet) REQUIRE t.id IS UNIQUE",
    "CREATE CONSTRAINT graph_clock_id IF NOT EXISTS FOR (c:GraphClock) REQUIRE c.id IS UNIQUE",
    "CREATE INDEX tweet_created IF NOT EXISTS FOR (t:Tweet) ON (t.created_at)",
    "CREATE INDEX follows_ts IF NOT EXISTS FOR ()-[r:FOLLOWS]-() ON (r.ts)",
] + [
    f"CREATE INDEX {rel.lower()}_ts IF NOT EXISTS FOR ()-[r:{rel}]-() ON (r.ts)"
    for rel in KIND_REL_TYPES.values()
]

# -- batch sequence numbers: what lets an export read one committed state ----------
#
# Neo4j reads are read-committed, so paged reads in several transactions (or even in one)
# see batches that commit in between. Every write batch therefore first takes the next number
# from a single clock node and stamps it (``batch_seq``) on each node and relationship it
# creates, and on each first-set tweet attribute (``created_at_seq``, ``text_seq``). The
# clock's write lock is held until the batch has committed, so batches commit in number
# order. An export takes the same lock once to read the last committed number (waiting for a
# batch in flight) and then reads only what is stamped up to it: writes are first-write-wins
# and never delete, so that is exactly the graph after that batch. Data written without a
# stamp (bulk import, older versions) counts as 0, i.e. always visible.

# The clock also carries the graph's ``epoch``, a random number made with it: a clear() deletes
# the clock, so an incremental export's marker from before it is recognised as stale. graphrec's
# server procedures (graph/neo4j_plugin, KernelGraph.takeClock) take the same numbers from the
# same node under the same lock, so both paths' batches interleave in one order.
NEXT_BATCH_SEQ = """
MERGE (c:GraphClock {id: 0})
ON CREATE SET c.seq = 0
SET c.seq = c.seq + 1, c.epoch = coalesce(c.epoch, 1 + toInteger(rand() * 4503599627370495))
RETURN c.seq AS seq
"""
# SET of an unchanged value still takes the node's write lock: waits for a batch in flight.
LAST_BATCH_SEQ = """
OPTIONAL MATCH (c:GraphClock {id: 0})
SET c.seq = c.seq
RETURN coalesce(c.seq, 0) AS seq, coalesce(c.epoch, 0) AS epoch
"""

# -- writes (each runs inside one managed write transaction per batch, with $seq) -------

MERGE_USERS = "UNWIND $ids AS id MERGE (u:User {id: id}) ON CREATE SET u.batch_seq = $seq"
MERGE_TWEETS = "UNWIND $ids AS id MERGE (t:Tweet {id: id}) ON CREATE SET t.batch_seq = $seq"

# rows: [tweet_id, author_id or null, created or null, text or null]; batches are
# de-duplicated by tweet id on the client so a row never races another.
WRITE_TWEETS = """
UNWIND $rows AS r
MERGE (t:Tweet {id: r[0]})
ON CREATE SET t.batch_seq = $seq
WITH t, r, t.created_at IS NULL AND r[2] IS NOT NULL AS new_created, t.text IS NULL AND r[3] IS NOT NULL AS new_text
SET t.created_at = coalesce(t.created_at, r[2]), t.text = coalesce(t.text, r[3]),
    t.created_at_seq = CASE WHEN new_created THEN $seq ELSE t.created_at_seq END,
    t.text_seq = CASE WHEN new_text THEN $seq ELSE t.text_seq END
WITH t, r
WHERE r[1] IS NOT NULL AND NOT EXISTS { (t)<-[:POSTED]-(:User) }
MATCH (u:User {id: r[1]})
CREATE (u)-[:POSTED {batch_seq: $seq}]->(t)
"""

# rows: [src, dst, ts]
WRITE_FOLLOWS = """
UNWIND $rows AS r
MATCH (a:User {id: r[0]})
MATCH (b:User {id: r[1]})
MERGE (a)-[f:FOLLOWS]->(b)
ON CREATE SET f.ts = r[2], f.batch_seq = $seq
"""

# rows: [user, tweet, ts, weight]; one statement per engagement kind.
WRITE_ENGAGEMENTS = {
    kind: f"""
UNWIND $rows AS r
MATCH (u:User {{id: r[0]}})
MATCH (t:Tweet {{id: r[1]}})
MERGE (u)-[e:{rel}]->(t)
ON CREATE SET e.ts = r[2], e.weight = r[3], e.batch_seq = $seq
"""
    for kind, rel in KIND_REL_TYPES.items()
}

# -- export (read transactions, paged by node id, up to batch $hw) -------------------
# A relationship's ends were created by its own batch or an earlier one, so filtering the
# relationship by its stamp is enough.

USER_ID_PAGE = """
MATCH (u:User) WHERE u.id > $after AND coalesce(u.batch_seq, 0) <= $hw
WITH u.id AS id ORDER BY id LIMIT $limit
RETURN collect(id) AS ids
"""

TWEET_PAGE = """
MATCH (t:Tweet) WHERE t.id > $after AND coalesce(t.batch_seq, 0) <= $hw
WITH t ORDER BY t.id LIMIT $limit
OPTIONAL MATCH (a:User)-[p:POSTED]->(t) WHERE coalesce(p.batch_seq, 0) <= $hw
RETURN collect([
    t.id,
    coalesce(a.id, -1),
    CASE WHEN coalesce(t.created_at_seq, 0) <= $hw THEN coalesce(t.created_at, 0) ELSE 0 END,
    CASE WHEN coalesce(t.text_seq, 0) <= $hw THEN coalesce(t.text, '') ELSE '' END
]) AS rows
"""

FOLLOWS_OF_USERS = """
UNWIND $ids AS id
MATCH (a:User {id: id})-[f:FOLLOWS]->(b:User)
WHERE coalesce(f.batch_seq, 0) <= $hw
RETURN collect(id) AS src, collect(b.id) AS dst, collect(coalesce(f.ts, 0)) AS ts
"""

ENGAGEMENTS_OF_USERS = f"""
UNWIND $ids AS id
MATCH (u:User {{id: id}})-[e:{ENGAGEMENT_TYPES}]->(t:Tweet)
WHERE coalesce(e.batch_seq, 0) <= $hw
RETURN collect(id) AS users, collect(t.id) AS tweets, collect(type(e)) AS types,
       collect(coalesce(e.ts, 0)) AS ts, collect(coalesce(e.weight, 1.0)) AS weights
"""

COUNT_USERS = "MATCH (u:User) RETURN count(u) AS n"
COUNT_TWEETS = "MATCH (t:Tweet) RETURN count(t) AS n"
COUNT_FOLLOWS = "MATCH ()-[r:FOLLOWS]->() RETURN count(r) AS n"
COUNT_ENGAGEMENTS = [f"MATCH ()-[r:{rel}]->() RETURN count(r) AS n" for rel in KIND_REL_TYPES.values()]

DELETE_ALL = "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"

# -- exploration: ready, parameterised read queries ----------------------------

QUERIES: dict[str, str] = {
    # Accounts followed by the accounts $user follows, that $user does not follow yet.
    "followers_of_followers": """
MATCH (me:User {id: $user})-[:FOLLOWS]->(f:User)-[:FOLLOWS]->(c:User)
WHERE c <> me AND NOT (me)-[:FOLLOWS]->(c)
RETURN c.id AS user, count(DISTINCT f) AS via, collect(DISTINCT f.id)[..3] AS through
ORDER BY via DESC, user ASC LIMIT $limit
""",
    # Accounts that $user follows and that follow $user back.
    "mutual_follows": """
MATCH (me:User {id: $user})-[:FOLLOWS]->(f:User)-[:FOLLOWS]->(me)
RETURN f.id AS user ORDER BY user LIMIT $limit
""",
    # Tweets the accounts $user follows engaged with since $since (epoch seconds).
    "followees_recent_engagements": f"""
MATCH (me:User {{id: $user}})-[:FOLLOWS]->(f:User)-[e:{ENGAGEMENT_TYPES}]->(t:Tweet)
WHERE e.ts >= $since AND NOT (me)-[:{ENGAGEMENT_TYPES}]->(t)
RETURN t.id AS tweet, count(DISTINCT f) AS followees, sum(e.weight) AS weight,
       collect(DISTINCT f.id)[..3] AS by, max(e.ts) AS last_ts
ORDER BY followees DESC, weight DESC, tweet ASC LIMIT $limit
""",
    # Shortest follow paths (either direction) between two users, up to $max_hops.
    "paths_between": """
MATCH (a:User {id: $a}), (b:User {id: $b})
MATCH p = allShortestPaths((a)-[:FOLLOWS*..6]-(b))
WHERE length(p) <= $max_hops
RETURN DISTINCT [n IN nodes(p) | n.id] AS path, length(p) AS hops LIMIT $limit
""",
    # The most engaged tweets with an engagement in [$since, $until).
    "top_engaged_tweets": f"""
MATCH (u:User)-[e:{ENGAGEMENT_TYPES}]->(t:Tweet)
WHERE $since <= e.ts < $until
RETURN t.id AS tweet, count(e) AS engagements, sum(e.weight) AS weight
ORDER BY weight DESC, tweet ASC LIMIT $limit
""",
}

# -- embeddings (written back by the batch embedding job) ----------------------
#
# ``embedding`` is the model's vector. For search, each target also gets the vector augmented
# for maximum inner product search (graph.mips), in one of MIPS_BUCKETS properties
# ``embedding_mips_<b>`` by its norm range (norm-ranging: each range augmented with its own
# largest norm), with a cosine index per property (``<label>_embedding_mips_<b>``). Within a
# range the index's cosine ranks as the model's dot product; a query asks every range's index
# (the model's vector with a 0 appended) and merges the candidates by their dot product,
# computed here from ``embedding``. The plain ``<label>_embedding`` cosine index on the model's
# vector ranks by angle, not as a dot-product model does; it is only created on request.

MIPS_BUCKETS = 5
MIPS_PROPERTIES = tuple(f"embedding_mips_{b}" for b in range(MIPS_BUCKETS))
_REMOVE_MIPS = ", ".join(f"n.{p}" for p in MIPS_PROPERTIES)

# r = [id, embedding, {embedding_mips_<b>: augmented}]; the other ranges' properties are removed
# (a target whose norm range changed between model versions must leave its old index).
SET_EMBEDDINGS = {
    label: f"""UNWIND $rows AS r MATCH (n:{label} {{id: r[0]}})
REMOVE {_REMOVE_MIPS}
SET n.embedding = r[1], n.embedding_version = $version
SET n += r[2]"""
    for label in ("User", "Tweet")
}
# Quantisation off: a quantised index (Neo4j >= 5.23's default) scores approximately, which
# reorders close candidates; the HNSW graph's degree and build-time search list are parameters.
_INDEX_OPTIONS = """OPTIONS {indexConfig: {`vector.dimensions`: $dims, `vector.similarity_function`: 'cosine',
  `vector.quantization.enabled`: false, `vector.hnsw.m`: $m, `vector.hnsw.ef_construction`: $ef_construction}}"""
CREATE_VECTOR_INDEX = {
    label: [
        f"CREATE VECTOR INDEX {label.lower()}_{prop} IF NOT EXISTS FOR (n:{label}) ON (n.{prop})\n{_INDEX_OPTIONS}"
        for prop in MIPS_PROPERTIES
    ]
    for label in ("User", "Tweet")
}
CREATE_PLAIN_VECTOR_INDEX = {
    label: f"CREATE VECTOR INDEX {label.lower()}_embedding IF NOT EXISTS FOR (n:{label}) ON (n.embedding)\n{_INDEX_OPTIONS}"
    for label in ("User", "Tweet")
}
DROP_VECTOR_INDEX = {
    label: [
        f"DROP INDEX {label.lower()}_{name} IF EXISTS"
        for name in ("embedding", "embedding_mips", *MIPS_PROPERTIES)
    ]
    for label in ("User", "Tweet")
}
# The best $k targets for the model vector $model: each index in $indexes is searched with
# $vector (for the augmented indexes: $model + [0]) and a search list of $ef, keeps its best
# $per_index by the index's score, and the union is ranked by the dot product with $model.
VECTOR_QUERY = """
UNWIND $indexes AS index
CALL (index) {
  CALL db.index.vector.queryNodes(index, $ef, $vector) YIELD node, score
  RETURN node ORDER BY score DESC LIMIT $per_index
}
WITH DISTINCT node
WITH node, reduce(s = 0.0, i IN range(0, size($model) - 1) | s + $model[i] * node.embedding[i]) AS dot
RETURN node.id AS id, dot AS score ORDER BY score DESC, id ASC LIMIT $k
"""
# From Cypher: the targets whose embeddings score highest against a user's stored embedding,
# as the model scores them ($indexes: the label's ``*_embedding_mips_<b>`` indexes).
VECTOR_QUERY_FOR_USER = """
MATCH (u:User {id: $user}) WHERE u.embedding IS NOT NULL
WITH u.embedding AS query
UNWIND $indexes AS index
CALL (index, query) {
  CALL db.index.vector.queryNodes(index, $ef, query + [0.0]) YIELD node, score
  RETURN node ORDER BY score DESC LIMIT $k
}
WITH DISTINCT query, node
WITH node, reduce(s = 0.0, i IN range(0, size(query) - 1) | s + query[i] * node.embedding[i]) AS dot
RETURN node.id AS id, dot AS score ORDER BY score DESC, id ASC LIMIT $k
"""
# One index's own answer, in its own order (benchmarks and tests measure the index itself).
QUERY_VECTOR_INDEX = """
CALL db.index.vector.queryNodes($index, $k, $vector) YIELD node, score
RETURN node.id AS id, score
"""
AWAIT_INDEXES = "CALL db.awaitIndexes($seconds)"

# -- graphrec's own server procedures (graph/neo4j_plugin; called by graph/neo4j_procedures.py) --

PLUGIN_PROCEDURES = (
    "SHOW PROCEDURES YIELD name WHERE name STARTS WITH 'graphrec.' RETURN collect(name) AS names"
)
PLUGIN_VERSION = (
    "CALL graphrec.version() YIELD version, protocol, neo4j, kinds RETURN version, protocol, neo4j, kinds"
)
# The change log: one :GraphrecDelta node per graphrec write call that changed something, keyed by
# its batch number (GraphClock's seq); the batch numbers and stamps are the Cypher path's.
PLUGIN_SCHEMA = [
    "CREATE INDEX graphrec_delta_seq IF NOT EXISTS FOR (d:GraphrecDelta) ON (d.seq)",
]
PLUGIN_AWAIT_SCHEMA = "CALL db.awaitIndex('graphrec_delta_seq', $seconds)"
_WRITE_YIELD = (
    " YIELD seq, rows, nodes, relationships, timings RETURN seq, rows, nodes, relationships, timings"
)
PLUGIN_WRITE = {
    "users": "CALL graphrec.writeUsers($ids)" + _WRITE_YIELD,
    "tweets": "CALL graphrec.writeTweets($ids, $authors, $created, $texts)" + _WRITE_YIELD,
    "follows": "CALL graphrec.writeFollows($src, $dst, $ts)" + _WRITE_YIELD,
    "engagements": "CALL graphrec.writeEngagements($users, $tweets, $kinds, $ts, $weights)" + _WRITE_YIELD,
}
# $hw: the high-water batch number of a read view (LAST_BATCH_SEQ).
PLUGIN_EXPORT = "CALL graphrec.export($hw, -1, $chunk_rows) YIELD part, rows, data RETURN part, rows, data"
PLUGIN_CHANGES = (
    "CALL graphrec.changes($epoch, $seq, $hw, $chunk_rows) YIELD part, rows, data RETURN part, rows, data"
)
PLUGIN_PRUNE = "CALL graphrec.pruneChanges($epoch, $through) YIELD deleted, pruned RETURN deleted, pruned"
