package io.graphrec.neo4j.plugin;

import io.graphrec.neo4j.plugin.Columns.ByteColumn;
import io.graphrec.neo4j.plugin.Columns.FloatColumn;
import io.graphrec.neo4j.plugin.Columns.LongColumn;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import org.neo4j.exceptions.KernelException;
import org.neo4j.internal.kernel.api.IndexQueryConstraints;
import org.neo4j.internal.kernel.api.IndexReadSession;
import org.neo4j.internal.kernel.api.NodeCursor;
import org.neo4j.internal.kernel.api.NodeValueIndexCursor;
import org.neo4j.internal.kernel.api.PropertyCursor;
import org.neo4j.internal.kernel.api.PropertyIndexQuery;
import org.neo4j.internal.kernel.api.RelationshipScanCursor;
import org.neo4j.internal.schema.IndexOrder;
import org.neo4j.storageengine.api.PropertySelection;
import org.neo4j.values.storable.Value;
import org.neo4j.values.storable.Values;

/**
 * The read half: the whole graph, or the change log after a marker, as a few records of packed
 * columns (see {@link Delta} for the column names).
 *
 * <p>A full export is one pass over the node store (users and tweets, each node's external id
 * kept in an array indexed by node reference) and one pass over the relationship store (follows,
 * engagements, authorship), with no index lookups and no per-relationship records on the wire.
 */
final class Export {
    private Export() {}

    /** One record of an export: {@code part} is marker, users, tweets, follows, engagements or changes. */
    public static final class Chunk {
        public String part;
        public long rows;
        public Map<String, Object> data;

        Chunk(String part, long rows, Map<String, Object> data) {
            this.part = part;
            this.rows = rows;
            this.data = data;
        }
    }

    static Chunk marker(KernelGraph.Clock clock, long hw) {
        Map<String, Object> data = new LinkedHashMap<>();
        data.put("epoch", clock == null ? 0L : clock.epoch());
        data.put("seq", hw);
        data.put("pruned", clock == null ? 0L : clock.pruned());
        return new Chunk("marker", 0, data);
    }

    /**
     * The marker of a read up to batch {@code hw}, after checking that a client's marker
     * ({@code epoch}, {@code since}) belongs to this graph: same epoch (a graph cleared since has a
     * new clock, so a new epoch; epoch 0 with seq 0, "nothing seen yet", fits any) and a number
     * in 0..hw.
     */
    static Chunk checkMarker(KernelGraph g, long epoch, long since, long hw) throws KernelException {
        KernelGraph.Clock clock = g.clockIfExists();
        long current = clock == null ? 0 : clock.epoch();
        if (epoch != current && !(epoch == 0 && since == 0)) {
            throw new IllegalArgumentException("graphrec.changes: the marker is from another graph (epoch " + epoch
                    + ", this database's is " + current + "; it was cleared or replaced): take a full export");
        }
        if (since < 0 || since > hw || (clock != null && hw > clock.seq())) {
            throw new IllegalArgumentException("graphrec.changes: marker seq " + since + " or high-water mark " + hw
                    + " is outside this graph's batches (0.." + (clock == null ? 0 : clock.seq()) + ")");
        }
        return marker(clock, hw);
    }

    private static final byte NONE = 0, USER = 1, TWEET = 2;

    /**
     * The full export, produced lazily chunk by chunk as the client pulls records: what batches
     * numbered in (after, hw] created or set (after = -1: the whole graph as of batch hw; a
     * missing stamp counts as 0). A node or relationship stamped above hw is skipped, as the
     * Cypher export's pages skip it; so is a tweet field set by a later batch.
     */
    static final class Full implements Iterator<Chunk>, AutoCloseable {
        private final KernelGraph g;
        private final int chunkRows;
        private final long after, hw;
        /** Tweets (by position) with something in range: created, a field set, an author. */
        private final java.util.BitSet touched = new java.util.BitSet();
        private final ArrayDeque<Chunk> ready = new ArrayDeque<>();
        // per node reference: what it is, its external id, the tweet's position
        private byte[] kind = new byte[1024];
        private long[] ext = new long[1024];
        private int[] tweetPos = new int[1024];
        private final LongColumn users = new LongColumn();
        private final LongColumn tweetIds = new LongColumn();
        private final LongColumn tweetCreated = new LongColumn();
        private long[] tweetAuthors;
        private final LongColumn textIndex = new LongColumn();
        private final List<String> texts = new ArrayList<>();
        private RelationshipScanCursor scan;
        private PropertyCursor props;
        private boolean relationshipsDone;
        private boolean tweetsDone;
        private LongColumn fSrc = new LongColumn(), fDst = new LongColumn(), fTs = new LongColumn();
        private LongColumn eUser = new LongColumn(), eTweet = new LongColumn(), eTs = new LongColumn();
        private ByteColumn eKind = new ByteColumn();
        private FloatColumn eWeight = new FloatColumn();
        final Map<String, Object> timings = new LinkedHashMap<>();
        private long t0 = System.nanoTime();

        Full(KernelGraph g, long after, long hw, int chunkRows) throws KernelException {
            this.g = g;
            this.after = after;
            this.hw = hw;
            this.chunkRows = Math.max(1, chunkRows);
            ready.add(marker(g.clockIfExists(), hw));
            scanNodes();
            for (int lo = 0; lo < users.size; lo += this.chunkRows) {
                int hi = Math.min(users.size, lo + this.chunkRows);
                Map<String, Object> data = new LinkedHashMap<>();
                data.put("users", Columns.pack(Arrays.copyOfRange(users.values, lo, hi), hi - lo));
                ready.add(new Chunk("users", hi - lo, data));
            }
            tweetAuthors = new long[tweetIds.size];
            Arrays.fill(tweetAuthors, -1);
            scan = g.relationshipScanCursor();
            g.read.allRelationshipsScan(scan);
            lap("nodes_ms");
        }

        private void lap(String name) {
            long now = System.nanoTime();
            timings.merge(name, (now - t0) / 1e6, (a, b) -> (Double) a + (Double) b);
            t0 = now;
        }

        private void scanNodes() {
            NodeCursor nodes = g.nodeCursor();
            props = g.propertyCursor();
            PropertySelection tweetKeys =
                    PropertySelection.selection(g.id, g.createdAt, g.text, g.batchSeq, g.createdAtSeq, g.textSeq);
            PropertySelection userKeys = PropertySelection.selection(g.id, g.batchSeq);
            try (nodes) {
                g.read.allNodesScan(nodes);
                while (nodes.next()) {
                    boolean isUser = g.user >= 0 && nodes.hasLabel(g.user);
                    boolean isTweet = !isUser && g.tweet >= 0 && nodes.hasLabel(g.tweet);
                    if (!isUser && !isTweet) {
                        continue;
                    }
                    long ref = nodes.nodeReference();
                    long id = -1, created = 0, stamp = 0, createdStamp = 0, textStamp = 0;
                    String text = null;
                    nodes.properties(props, isUser ? userKeys : tweetKeys);
                    while (props.next()) {
                        int k = props.propertyKey();
                        Value v = props.propertyValue();
                        if (k == g.id) id = KernelGraph.asLong(v, -1);
                        else if (k == g.createdAt) created = KernelGraph.asLong(v, 0);
                        else if (k == g.text) text = KernelGraph.asString(v);
                        else if (k == g.batchSeq) stamp = KernelGraph.stamp(v);
                        else if (k == g.createdAtSeq) createdStamp = KernelGraph.stamp(v);
                        else if (k == g.textSeq) textStamp = KernelGraph.stamp(v);
                    }
                    if (id < 0 || stamp > hw) {
                        continue; // no id: as the Cypher export, which pages by id; a later batch's: not in this view
                    }
                    boolean fresh = stamp > after;
                    grow(ref);
                    ext[(int) ref] = id;
                    if (isUser) {
                        kind[(int) ref] = USER;
                        if (fresh) {
                            users.add(id);
                        }
                    } else {
                        kind[(int) ref] = TWEET;
                        int pos = tweetIds.size;
                        tweetPos[(int) ref] = pos;
                        boolean createdIn = created != 0 && createdStamp > after && createdStamp <= hw;
                        boolean textIn = text != null && !text.isEmpty() && textStamp > after && textStamp <= hw;
                        if (textIn) {
                            textIndex.add(pos);
                            texts.add(text);
                        }
                        tweetIds.add(id);
                        tweetCreated.add(createdIn ? created : 0);
                        if (fresh || createdIn || textIn) {
                            touched.set(pos);
                        }
                    }
                }
            }
        }

        private void grow(long ref) {
            if (ref >= Integer.MAX_VALUE - 8) {
                throw new IllegalStateException("graphrec.export: node reference " + ref + " is too large");
            }
            if (ref >= kind.length) {
                int n = (int) Math.min(Integer.MAX_VALUE - 8, Math.max(ref + 1, (long) kind.length * 2));
                kind = Arrays.copyOf(kind, n);
                ext = Arrays.copyOf(ext, n);
                tweetPos = Arrays.copyOf(tweetPos, n);
            }
        }

        private byte kindOf(long ref) {
            return ref < kind.length ? kind[(int) ref] : NONE;
        }

        /** Scan relationships until a chunk is full (or the store ends). */
        private void scanRelationships() {
            int[] eng = g.engagements;
            PropertySelection keys = PropertySelection.selection(g.ts, g.weight, g.batchSeq);
            PropertySelection stampOnly = PropertySelection.selection(g.batchSeq);
            while (fSrc.size < chunkRows && eUser.size < chunkRows) {
                if (!scan.next()) {
                    relationshipsDone = true;
                    break;
                }
                int type = scan.type();
                long s = scan.sourceNodeReference();
                long t = scan.targetNodeReference();
                if (type == g.follows) {
                    if (kindOf(s) != USER || kindOf(t) != USER) {
                        continue;
                    }
                    long ts = 0, stamp = 0;
                    scan.properties(props, keys);
                    while (props.next()) {
                        int pk = props.propertyKey();
                        if (pk == g.ts) ts = KernelGraph.asLong(props.propertyValue(), 0);
                        else if (pk == g.batchSeq) stamp = KernelGraph.stamp(props.propertyValue());
                    }
                    if (stamp <= after || stamp > hw) {
                        continue;
                    }
                    fSrc.add(ext[(int) s]);
                    fDst.add(ext[(int) t]);
                    fTs.add(ts);
                } else if (type == g.posted) {
                    if (kindOf(s) == USER && kindOf(t) == TWEET && tweetAuthors[tweetPos[(int) t]] < 0) {
                        long stamp = 0;
                        scan.properties(props, stampOnly);
                        while (props.next()) {
                            stamp = KernelGraph.stamp(props.propertyValue());
                        }
                        if (stamp > after && stamp <= hw) {
                            tweetAuthors[tweetPos[(int) t]] = ext[(int) s];
                            touched.set(tweetPos[(int) t]);
                        }
                    }
                } else {
                    int k = 0;
                    while (k < eng.length && eng[k] != type) {
                        k++;
                    }
                    if (k == eng.length || kindOf(s) != USER || kindOf(t) != TWEET) {
                        continue;
                    }
                    long ts = 0, stamp = 0;
                    double w = 1.0;
                    scan.properties(props, keys);
                    while (props.next()) {
                        int pk = props.propertyKey();
                        if (pk == g.ts) ts = KernelGraph.asLong(props.propertyValue(), 0);
                        else if (pk == g.weight) w = KernelGraph.asDouble(props.propertyValue(), 1.0);
                        else if (pk == g.batchSeq) stamp = KernelGraph.stamp(props.propertyValue());
                    }
                    if (stamp <= after || stamp > hw) {
                        continue;
                    }
                    eUser.add(ext[(int) s]);
                    eTweet.add(ext[(int) t]);
                    eKind.add((byte) k);
                    eTs.add(ts);
                    eWeight.add((float) w);
                }
            }
            if (fSrc.size >= chunkRows || (relationshipsDone && fSrc.size > 0)) {
                Map<String, Object> data = new LinkedHashMap<>();
                data.put("follow_src", fSrc.bytes());
                data.put("follow_dst", fDst.bytes());
                data.put("follow_ts", fTs.bytes());
                ready.add(new Chunk("follows", fSrc.size, data));
                fSrc = new LongColumn();
                fDst = new LongColumn();
                fTs = new LongColumn();
            }
            if (eUser.size >= chunkRows || (relationshipsDone && eUser.size > 0)) {
                Map<String, Object> data = new LinkedHashMap<>();
                data.put("eng_user", eUser.bytes());
                data.put("eng_tweet", eTweet.bytes());
                data.put("eng_kind", eKind.bytes());
                data.put("eng_ts", eTs.bytes());
                data.put("eng_weight", eWeight.bytes());
                ready.add(new Chunk("engagements", eUser.size, data));
                eUser = new LongColumn();
                eTweet = new LongColumn();
                eKind = new ByteColumn();
                eTs = new LongColumn();
                eWeight = new FloatColumn();
            }
            lap("relationships_ms");
        }

        private void emitTweets() {
            if (after >= 0) { // keep the touched tweets only (text positions renumbered)
                compactTweets();
            }
            int t = 0; // position in the text columns
            for (int lo = 0; lo < tweetIds.size; lo += chunkRows) {
                int hi = Math.min(tweetIds.size, lo + chunkRows);
                Map<String, Object> data = new LinkedHashMap<>();
                data.put("tweet_ids", Columns.pack(Arrays.copyOfRange(tweetIds.values, lo, hi), hi - lo));
                data.put("tweet_authors", Columns.pack(Arrays.copyOfRange(tweetAuthors, lo, hi), hi - lo));
                data.put("tweet_created", Columns.pack(Arrays.copyOfRange(tweetCreated.values, lo, hi), hi - lo));
                int t1 = t;
                while (t1 < textIndex.size && textIndex.values[t1] < hi) {
                    t1++;
                }
                if (t1 > t) {
                    long[] idx = new long[t1 - t];
                    for (int i = t; i < t1; i++) {
                        idx[i - t] = textIndex.values[i] - lo;
                    }
                    data.put("tweet_text_index", Columns.pack(idx, idx.length));
                    data.put("tweet_texts", new ArrayList<>(texts.subList(t, t1)));
                }
                t = t1;
                ready.add(new Chunk("tweets", hi - lo, data));
            }
            tweetsDone = true;
            Map<String, Object> data = new LinkedHashMap<>(timings);
            ready.add(new Chunk("timings", 0, data));
        }

        private void compactTweets() {
            LongColumn ids = new LongColumn(), created = new LongColumn(), tIndex = new LongColumn();
            long[] authors = new long[touched.cardinality()];
            List<String> keptTexts = new ArrayList<>();
            int ti = 0;
            for (int pos = 0; pos < tweetIds.size; pos++) {
                while (ti < textIndex.size && textIndex.values[ti] < pos) {
                    ti++;
                }
                if (!touched.get(pos)) {
                    continue;
                }
                if (ti < textIndex.size && textIndex.values[ti] == pos) {
                    tIndex.add(ids.size);
                    keptTexts.add(texts.get(ti));
                }
                authors[ids.size] = tweetAuthors[pos];
                ids.add(tweetIds.values[pos]);
                created.add(tweetCreated.values[pos]);
            }
            tweetIds.size = 0;
            tweetCreated.size = 0;
            textIndex.size = 0;
            for (int i = 0; i < ids.size; i++) {
                tweetIds.add(ids.values[i]);
                tweetCreated.add(created.values[i]);
            }
            for (int i = 0; i < tIndex.size; i++) {
                textIndex.add(tIndex.values[i]);
            }
            texts.clear();
            texts.addAll(keptTexts);
            tweetAuthors = authors;
        }

        @Override
        public boolean hasNext() {
            while (ready.isEmpty() && !tweetsDone) {
                if (!relationshipsDone) {
                    scanRelationships();
                } else {
                    emitTweets();
                }
            }
            return !ready.isEmpty();
        }

        @Override
        public Chunk next() {
            if (!hasNext()) {
                throw new NoSuchElementException();
            }
            return ready.poll();
        }

        @Override
        public void close() {
            if (scan != null) {
                scan.close();
            }
            if (props != null) {
                props.close();
            }
            g.close();
        }
    }

    /** One column of each part: its length is the part's number of rows. */
    private static final java.util.Set<String> ROW_COLUMNS =
            java.util.Set.of("users", "tweet_ids", "follow_src", "eng_user");

    /** The change-log entries numbered in (since, hw], in order (the caller checked there is one per batch). */
    static List<Chunk> changes(KernelGraph g, long since, long hw) throws KernelException {
        List<Chunk> out = new ArrayList<>();
        if (since >= hw) {
            return out;
        }
        IndexReadSession session = g.read.indexReadSession(g.deltaIndex);
        try (NodeValueIndexCursor cursor = g.ktx.cursors().allocateNodeValueIndexCursor(g.cc, g.mt);
                PropertyCursor props = g.propertyCursor()) {
            g.read.nodeIndexSeek(
                    g.ktx.queryContext(),
                    session,
                    cursor,
                    IndexQueryConstraints.ordered(IndexOrder.ASCENDING),
                    PropertyIndexQuery.range(g.seq, Values.longValue(since), false, Values.longValue(hw), true));
            while (cursor.next()) {
                cursor.node(g.node);
                if (!g.node.next()) {
                    continue;
                }
                Map<String, Object> data = new LinkedHashMap<>();
                long rows = 0;
                g.node.properties(props);
                while (props.next()) {
                    String name = g.ktx.tokenRead().propertyKeyName(props.propertyKey());
                    Object o = props.propertyValue().asObjectCopy();
                    if (o instanceof String[] strings) {
                        o = new ArrayList<>(Arrays.asList(strings));
                    } else if (o instanceof byte[] bytes && ROW_COLUMNS.contains(name)) {
                        rows += bytes.length / Long.BYTES;
                    }
                    data.put(name, o);
                }
                out.add(new Chunk("changes", rows, data));
            }
        }
        return out;
    }
}
