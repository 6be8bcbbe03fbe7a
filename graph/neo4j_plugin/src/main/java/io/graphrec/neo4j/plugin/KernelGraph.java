package io.graphrec.neo4j.plugin;

import java.util.Iterator;
import java.util.concurrent.ThreadLocalRandom;
import org.eclipse.collections.api.map.primitive.MutableIntObjectMap;
import org.eclipse.collections.impl.map.mutable.primitive.IntObjectHashMap;
import org.neo4j.exceptions.KernelException;
import org.neo4j.graphdb.Direction;
import org.neo4j.internal.kernel.api.CursorFactory;
import org.neo4j.internal.kernel.api.IndexQueryConstraints;
import org.neo4j.internal.kernel.api.IndexReadSession;
import org.neo4j.internal.kernel.api.NodeCursor;
import org.neo4j.internal.kernel.api.NodeValueIndexCursor;
import org.neo4j.internal.kernel.api.PropertyCursor;
import org.neo4j.internal.kernel.api.PropertyIndexQuery;
import org.neo4j.internal.kernel.api.Read;
import org.neo4j.internal.kernel.api.RelationshipScanCursor;
import org.neo4j.internal.kernel.api.RelationshipTraversalCursor;
import org.neo4j.internal.kernel.api.SchemaRead;
import org.neo4j.internal.kernel.api.TokenRead;
import org.neo4j.internal.kernel.api.TokenWrite;
import org.neo4j.internal.kernel.api.Write;
import org.neo4j.internal.schema.IndexDescriptor;
import org.neo4j.internal.schema.IndexOrder;
import org.neo4j.internal.schema.SchemaDescriptors;
import org.neo4j.io.pagecache.context.CursorContext;
import org.neo4j.kernel.api.KernelTransaction;
import org.neo4j.memory.MemoryTracker;
import org.neo4j.storageengine.api.PropertySelection;
import org.neo4j.storageengine.api.RelationshipSelection;
import org.neo4j.values.storable.NumberValue;
import org.neo4j.values.storable.TextValue;
import org.neo4j.values.storable.Value;
import org.neo4j.values.storable.Values;

/**
 * One procedure call's view of the graph through Neo4j's kernel API: token ids, the unique
 * indexes, reusable cursors, get-or-create of User/Tweet nodes and the graph's batch clock.
 *
 * <p>The graph model is graph/schema.py's (and graph/cypher.py's): {@code (:User {id})},
 * {@code (:Tweet {id, created_at, text})}, {@code FOLLOWS {ts}}, {@code POSTED},
 * {@code LIKED|RETWEETED|REPLIED|QUOTED|ENGAGED {ts, weight}}; everything a batch creates is
 * stamped {@code batch_seq}, a first-set tweet field {@code created_at_seq} / {@code text_seq},
 * with the batch's number from the one {@code (:GraphClock {id: 0})} node that the Cypher path
 * uses too (graph/cypher.py NEXT_BATCH_SEQ; see {@link #takeClock}).
 */
final class KernelGraph implements AutoCloseable {
    /** Engagement relationship types by kind code (graph/schema.py KINDS / KIND_REL_TYPES). */
    static final String[] KIND_TYPES = {"LIKED", "RETWEETED", "REPLIED", "QUOTED", "ENGAGED"};

    static final String CLOCK_LABEL = "GraphClock";
    static final String DELTA_LABEL = "GraphrecDelta";

    final KernelTransaction ktx;
    final Read read;
    final Write write; // null in read-only calls
    final CursorContext cc;
    final MemoryTracker mt;
    final int user, tweet, clockLabel, deltaLabel;
    final int id, ts, weight, createdAt, text, seq, epoch, pruned, batchSeq, createdAtSeq, textSeq;
    final int follows, posted;
    final int[] engagements = new int[KIND_TYPES.length];
    final IndexDescriptor userIndex, tweetIndex, clockIndex, deltaIndex;
    final NodeValueIndexCursor seek;
    final NodeCursor node;
    final RelationshipTraversalCursor rels;
    final PropertyCursor props;
    /** Whether the last {@link #userNode}/{@link #tweetNode} call created the node. */
    boolean created;

    private KernelGraph(KernelTransaction ktx, boolean forWrite) throws KernelException {
        this.ktx = ktx;
        this.read = ktx.dataRead();
        this.write = forWrite ? ktx.dataWrite() : null;
        this.cc = ktx.cursorContext();
        this.mt = ktx.memoryTracker();
        String[] labels = {"User", "Tweet", CLOCK_LABEL, DELTA_LABEL};
        String[] keys = {
            "id", "ts", "weight", "created_at", "text", "seq", "epoch", "pruned", "batch_seq", "created_at_seq",
            "text_seq"
        };
        String[] types = new String[2 + KIND_TYPES.length];
        types[0] = "FOLLOWS";
        types[1] = "POSTED";
        System.arraycopy(KIND_TYPES, 0, types, 2, KIND_TYPES.length);
        int[] l = new int[labels.length], k = new int[keys.length], t = new int[types.length];
        if (forWrite) {
            TokenWrite tw = ktx.tokenWrite();
            tw.labelGetOrCreateForNames(labels, l);
            tw.propertyKeyGetOrCreateForNames(keys, k);
            tw.relationshipTypeGetOrCreateForNames(types, t);
        } else {
            // A read-only call creates no tokens; a missing one (TokenRead.NO_TOKEN) matches nothing.
            TokenRead tr = ktx.tokenRead();
            for (int i = 0; i < labels.length; i++) l[i] = tr.nodeLabel(labels[i]);
            for (int i = 0; i < keys.length; i++) k[i] = tr.propertyKey(keys[i]);
            for (int i = 0; i < types.length; i++) t[i] = tr.relationshipType(types[i]);
        }
        user = l[0];
        tweet = l[1];
        clockLabel = l[2];
        deltaLabel = l[3];
        id = k[0];
        ts = k[1];
        weight = k[2];
        createdAt = k[3];
        text = k[4];
        seq = k[5];
        epoch = k[6];
        pruned = k[7];
        batchSeq = k[8];
        createdAtSeq = k[9];
        textSeq = k[10];
        follows = t[0];
        posted = t[1];
        System.arraycopy(t, 2, engagements, 0, KIND_TYPES.length);
        SchemaRead schema = ktx.schemaRead();
        userIndex = findIndex(schema, user, id, true);
        tweetIndex = findIndex(schema, tweet, id, true);
        clockIndex = findIndex(schema, clockLabel, id, true);
        deltaIndex = findIndex(schema, deltaLabel, seq, false);
        CursorFactory cursors = ktx.cursors();
        seek = cursors.allocateNodeValueIndexCursor(cc, mt);
        node = cursors.allocateNodeCursor(cc, mt);
        rels = cursors.allocateRelationshipTraversalCursor(cc, mt);
        props = cursors.allocatePropertyCursor(cc, mt);
    }

    static KernelGraph forWrite(KernelTransaction ktx) throws KernelException {
        KernelGraph g = new KernelGraph(ktx, true);
        g.requireSchema();
        return g;
    }

    static KernelGraph forRead(KernelTransaction ktx) throws KernelException {
        return new KernelGraph(ktx, false);
    }

    private static IndexDescriptor findIndex(SchemaRead schema, int label, int property, boolean unique) {
        if (label < 0 || property < 0) {
            return null;
        }
        Iterator<IndexDescriptor> it = schema.index(SchemaDescriptors.forLabel(label, property));
        while (it.hasNext()) {
            IndexDescriptor index = it.next();
            if (index.isUnique() || !unique) {
                return index;
            }
        }
        return null;
    }

    /** The writes look nodes up by their uniqueness constraints; without them they would scan. */
    private void requireSchema() {
        String missing = userIndex == null
                ? "the uniqueness constraint on :User(id)"
                : tweetIndex == null
                        ? "the uniqueness constraint on :Tweet(id)"
                        : clockIndex == null
                                ? "the uniqueness constraint on :" + CLOCK_LABEL + "(id)"
                                : deltaIndex == null ? "the index on :" + DELTA_LABEL + "(seq)" : null;
        if (missing != null) {
            throw new IllegalStateException("graphrec: " + missing
                    + " is missing; create the schema first (Neo4jStore.ensure_schema / graph.cypher.SCHEMA"
                    + " and PLUGIN_SCHEMA)");
        }
    }

    // -- nodes -----------------------------------------------------------------------------

    long userNode(long externalId) throws KernelException {
        return getOrCreate(user, userIndex, externalId);
    }

    long tweetNode(long externalId) throws KernelException {
        return getOrCreate(tweet, tweetIndex, externalId);
    }

    /**
     * The node with this label and {@code id}, created when missing. A plain index seek finds
     * existing nodes without taking a lock; a miss is repeated as a locking seek, which takes the
     * index entry's lock, so a concurrent writer (a Cypher MERGE too) cannot create it twice.
     */
    private long getOrCreate(int label, IndexDescriptor index, long externalId) throws KernelException {
        Value value = Values.longValue(externalId);
        PropertyIndexQuery.ExactPredicate exact = PropertyIndexQuery.exact(id, value);
        read.nodeIndexSeek(ktx.queryContext(), session(index), seek, IndexQueryConstraints.unconstrained(), exact);
        long ref = seek.next() ? seek.nodeReference() : -1;
        if (ref < 0) {
            ref = read.lockingNodeUniqueIndexSeek(index, seek, exact);
        }
        created = ref < 0;
        if (created) {
            ref = write.nodeCreateWithLabels(new int[] {label});
            write.nodeSetProperty(ref, id, value);
            newNodes.add(ref);
        }
        return ref;
    }

    /** Nodes and relationships this call created, and tweets whose created_at / text it set: stamped at the end. */
    final Columns.LongColumn newNodes = new Columns.LongColumn(), newRels = new Columns.LongColumn();
    final Columns.LongColumn createdAtSet = new Columns.LongColumn(), textSet = new Columns.LongColumn();

    /**
     * The properties of the relationships this call created, set at the end in one
     * {@link org.neo4j.internal.kernel.api.Write#relationshipApplyChanges} call per relationship
     * together with the stamp (one property-change pass per relationship instead of one per
     * property): {@code relTs} (when {@code relShape} >= 1) and {@code relWeight} (when 2).
     */
    final Columns.LongColumn relTs = new Columns.LongColumn();

    final Columns.FloatColumn relWeight = new Columns.FloatColumn();
    private byte[] relShape = new byte[16];

    private void addRel(long rel, int shape, long ts, float weight) {
        if (newRels.size == relShape.length) {
            relShape = java.util.Arrays.copyOf(relShape, relShape.length * 2);
        }
        relShape[newRels.size] = (byte) shape;
        newRels.add(rel);
        relTs.add(ts);
        relWeight.add(weight);
    }

    /** A relationship without properties of its own (POSTED): it gets the stamp only. */
    long createRelationship(long from, int type, long to) throws KernelException {
        long rel = write.relationshipCreate(from, type, to);
        addRel(rel, 0, 0, 0f);
        return rel;
    }

    /** A relationship with {@code ts} (FOLLOWS). */
    long createRelationship(long from, int type, long to, long ts) throws KernelException {
        long rel = write.relationshipCreate(from, type, to);
        addRel(rel, 1, ts, 0f);
        return rel;
    }

    /** A relationship with {@code ts} and {@code weight} (engagements; a double, as Cypher stores a Python float). */
    long createRelationship(long from, int type, long to, long ts, float weight) throws KernelException {
        long rel = write.relationshipCreate(from, type, to);
        addRel(rel, 2, ts, weight);
        return rel;
    }

    boolean changedAnything() {
        return newNodes.size + newRels.size + createdAtSet.size + textSet.size > 0;
    }

    /** Stamp everything this call created or set with the batch number {@code batch}. */
    void stampAll(long batch) throws KernelException {
        Value v = Values.longValue(batch);
        for (int i = 0; i < newNodes.size; i++) {
            write.nodeSetProperty(newNodes.values[i], batchSeq, v);
        }
        MutableIntObjectMap<Value> props = new IntObjectHashMap<>(4);
        for (int i = 0; i < newRels.size; i++) {
            props.clear();
            props.put(batchSeq, v);
            if (relShape[i] >= 1) {
                props.put(ts, Values.longValue(relTs.values[i]));
            }
            if (relShape[i] == 2) {
                props.put(weight, Values.doubleValue(relWeight.values[i]));
            }
            write.relationshipApplyChanges(newRels.values[i], props);
        }
        for (int i = 0; i < createdAtSet.size; i++) {
            write.nodeSetProperty(createdAtSet.values[i], createdAtSeq, v);
        }
        for (int i = 0; i < textSet.size; i++) {
            write.nodeSetProperty(textSet.values[i], textSeq, v);
        }
    }

    /** Whether the node has any relationship of this type and direction (including this transaction's). */
    private IndexReadSession userSession, tweetSession;

    private IndexReadSession session(IndexDescriptor index) throws KernelException {
        if (index == userIndex) {
            return userSession != null ? userSession : (userSession = read.indexReadSession(index));
        }
        return tweetSession != null ? tweetSession : (tweetSession = read.indexReadSession(index));
    }

    boolean hasRelationship(long nodeRef, int type, Direction direction) {
        read.singleNode(nodeRef, node);
        if (!node.next()) {
            return false;
        }
        return node.degreeWithMax(1, RelationshipSelection.selection(type, direction)) > 0;
    }

    /** Property keys among {@code keys} that the node has, as a bit set by position in {@code keys}. */
    int nodeHas(long nodeRef, int... keys) {
        read.singleNode(nodeRef, node);
        if (!node.next()) {
            return 0;
        }
        int mask = 0;
        node.properties(props, PropertySelection.selection(keys));
        while (props.next()) {
            int k = props.propertyKey();
            for (int i = 0; i < keys.length; i++) {
                if (keys[i] == k) {
                    mask |= 1 << i;
                }
            }
        }
        return mask;
    }

    static long asLong(Value v, long missing) {
        if (v instanceof NumberValue n) {
            return n.longValue();
        }
        return missing;
    }

    static double asDouble(Value v, double missing) {
        if (v instanceof NumberValue n) {
            return n.doubleValue();
        }
        return missing;
    }

    static String asString(Value v) {
        return v instanceof TextValue t ? t.stringValue() : null;
    }

    RelationshipScanCursor relationshipScanCursor() {
        return ktx.cursors().allocateRelationshipScanCursor(cc, mt);
    }

    NodeCursor nodeCursor() {
        return ktx.cursors().allocateNodeCursor(cc, mt);
    }

    PropertyCursor propertyCursor() {
        return ktx.cursors().allocatePropertyCursor(cc, mt);
    }

    // -- first-write-wins keys ---------------------------------------------------------------

    /** Lock namespaces of {@link #lockKeys}: one per kind of key a write call checks and sets. */
    static final long FOLLOWS_OF = 0x1f0110f5L, ENGAGEMENTS_OF = 0x2e9a9e5L, TWEET_FIELDS = 0x3bee7L;

    /**
     * Exclusive locks, held until the transaction ends, on the keys whose relationships or fields
     * this call checks and then creates, so two concurrent graphrec writers cannot both find a
     * key missing and both write it. They are index-entry locks on hashes that no index uses
     * (Neo4j's own locks are taken at commit, in node order, after all of these), acquired in
     * one sorted batch, so graphrec writers cannot deadlock on them.
     */
    void lockKeys(long namespace, long[] ids) {
        if (ids.length == 0) {
            return;
        }
        long[] resources = new long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            resources[i] = mix(namespace * 0x9E3779B97F4A7C15L + mix(ids[i]));
        }
        java.util.Arrays.sort(resources);
        ktx.locks().acquireExclusiveIndexEntryLock(resources);
    }

    private static long mix(long z) { // splitmix64's finaliser
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    // -- the batch clock (graph/cypher.py NEXT_BATCH_SEQ / LAST_BATCH_SEQ) ----------------------

    /** The clock: this batch's number (or the last one, for readers), the graph's epoch, how far the change log was pruned. */
    record Clock(long ref, long seq, long epoch, long pruned) {}

    private static long randomEpoch() {
        long e = 0;
        while (e <= 0) {
            e = ThreadLocalRandom.current().nextLong() >>> 12; // below 2^52, as Cypher's rand()-made ones
        }
        return e;
    }

    /**
     * The next batch number, exactly as the Cypher path takes it: {@code (:GraphClock {id: 0})}
     * is found or created, write-locked (held until this transaction ends, so batches commit in
     * number order and a reader that takes the same lock sees every batch up to the number it
     * reads committed), and its {@code seq} incremented. Call it after the batch's other work and
     * before stamping: graphrec writers then run their lookups and creates concurrently and only
     * queue for the stamping and the commit.
     */
    Clock takeClock() throws KernelException {
        Value zero = Values.longValue(0);
        PropertyIndexQuery.ExactPredicate exact = PropertyIndexQuery.exact(id, zero);
        read.nodeIndexSeek(ktx.queryContext(), read.indexReadSession(clockIndex), seek,
                IndexQueryConstraints.unconstrained(), exact);
        long ref = seek.next() ? seek.nodeReference() : -1;
        if (ref < 0) {
            ref = read.lockingNodeUniqueIndexSeek(clockIndex, seek, exact);
        }
        if (ref < 0) {
            ref = write.nodeCreateWithLabels(new int[] {clockLabel});
            write.nodeSetProperty(ref, id, zero);
            write.nodeSetProperty(ref, seq, zero);
        }
        ktx.locks().acquireExclusiveNodeLock(ref);
        Clock c = readClock(ref);
        long next = c.seq() + 1;
        write.nodeSetProperty(ref, seq, Values.longValue(next));
        long e = c.epoch();
        if (e == 0) {
            e = randomEpoch();
            write.nodeSetProperty(ref, epoch, Values.longValue(e));
        }
        return new Clock(ref, next, e, c.pruned());
    }

    /** The clock as committed (no lock: readers get their high-water mark from the client), or null. */
    Clock clockIfExists() throws KernelException {
        if (clockIndex == null || id < 0) {
            return null;
        }
        read.nodeIndexSeek(ktx.queryContext(), read.indexReadSession(clockIndex), seek,
                IndexQueryConstraints.unconstrained(), PropertyIndexQuery.exact(id, Values.longValue(0)));
        return seek.next() ? readClock(seek.nodeReference()) : null;
    }

    private Clock readClock(long ref) {
        read.singleNode(ref, node);
        long s = 0, e = 0, p = 0;
        if (node.next()) {
            node.properties(props, PropertySelection.selection(seq, epoch, pruned));
            while (props.next()) {
                int pk = props.propertyKey();
                long v = asLong(props.propertyValue(), 0);
                if (pk == seq) s = v;
                else if (pk == epoch) e = v;
                else if (pk == pruned) p = v;
            }
        }
        return new Clock(ref, s, e, p);
    }

    /** The number of change-log entries with a seq in (after, upTo]. */
    long deltaCount(long after, long upTo) throws KernelException {
        if (deltaIndex == null || seq < 0 || upTo <= after) {
            return 0;
        }
        read.nodeIndexSeek(ktx.queryContext(), read.indexReadSession(deltaIndex), seek,
                IndexQueryConstraints.unconstrained(),
                PropertyIndexQuery.range(seq, Values.longValue(after), false, Values.longValue(upTo), true));
        long n = 0;
        while (seek.next()) {
            n++;
        }
        return n;
    }

    /** A stamp as stored: {@code batch_seq} and friends, 0 when absent (bulk import, older versions). */
    static long stamp(Value v) {
        return asLong(v, 0);
    }

    @Override
    public void close() {
        seek.close();
        node.close();
        rels.close();
        props.close();
    }
}
