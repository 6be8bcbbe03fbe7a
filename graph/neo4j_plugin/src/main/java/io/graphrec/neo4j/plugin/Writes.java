package io.graphrec.neo4j.plugin;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.eclipse.collections.impl.set.mutable.primitive.LongHashSet;
import org.neo4j.exceptions.KernelException;
import org.neo4j.graphdb.Direction;
import org.neo4j.storageengine.api.RelationshipSelection;
import org.neo4j.values.storable.Value;
import org.neo4j.values.storable.Values;

/**
 * The write half: the same first-write-wins semantics as graph/cypher.py's statements.
 *
 * <ul>
 *   <li>users: {@code MERGE (:User {id})};
 *   <li>tweets: authors are merged as users first; the tweet is merged; {@code created_at} and
 *       {@code text} are set where unset (0 / null / "" mean "not given"); a {@code POSTED} from
 *       the author is created unless the tweet already has one;
 *   <li>follows: both ends merged; {@code MERGE (a)-[f:FOLLOWS]->(b) ON CREATE SET f.ts};
 *   <li>engagements: users and tweets merged; one relationship per (user, tweet, kind), created
 *       with {@code ts} and {@code weight} (a double, as Cypher stores a Python float).
 * </ul>
 *
 * Rows of a call are applied in order (a later duplicate of a key loses to the earlier one),
 * except that relationships are created grouped by their start node, which only changes internal
 * ids. Every row is validated before anything is written.
 */
final class Writes {
    private Writes() {}

    /** Milliseconds spent in each phase of a call (returned to the client for profiling). */
    static final class Timer {
        private long last = System.nanoTime();
        final Map<String, Object> ms = new java.util.LinkedHashMap<>();

        void lap(String phase) {
            long now = System.nanoTime();
            ms.merge(phase, (now - last) / 1e6, (a, b) -> (Double) a + (Double) b);
            last = now;
        }
    }

    static void users(KernelGraph g, long[] ids, Delta d) throws KernelException {
        for (int i = 0; i < ids.length; i++) {
            Columns.checkId(i, "user", ids[i]);
        }
        for (long id : Columns.sortedUnique(false, ids)) {
            g.userNode(id);
            if (g.created) {
                d.users.add(id);
                d.nodesCreated++;
            }
        }
    }

    static void checkTweets(long[] ids, long[] authors, long[] created, List<String> texts) {
        int n = ids.length;
        Columns.sameLength("graphrec.writeTweets", n, authors.length, "authors");
        Columns.sameLength("graphrec.writeTweets", n, created.length, "created");
        if (texts != null && !texts.isEmpty()) {
            Columns.sameLength("graphrec.writeTweets", n, texts.size(), "texts");
        }
        for (int i = 0; i < n; i++) {
            Columns.checkId(i, "tweet", ids[i]);
            if (authors[i] < -1) {
                throw new BadRowException(i, "author id " + authors[i] + " is negative (-1 means unknown)");
            }
        }
    }

    static void tweets(KernelGraph g, long[] ids, long[] authors, long[] createdAt, List<String> texts, Delta d)
            throws KernelException {
        boolean hasTexts = texts != null && !texts.isEmpty();
        long[] authorIds = Columns.sortedUnique(true, authors);
        long[] authorRefs = new long[authorIds.length];
        for (int k = 0; k < authorIds.length; k++) {
            authorRefs[k] = g.userNode(authorIds[k]);
            if (g.created) {
                d.users.add(authorIds[k]);
                d.nodesCreated++;
            }
        }
        long[] tweetIds = Columns.sortedUnique(false, ids);
        long[] tweetRefs = new long[tweetIds.length];
        boolean[] created = new boolean[tweetIds.length];
        long[] existing = new long[tweetIds.length];
        int nExisting = 0;
        for (int k = 0; k < tweetIds.length; k++) {
            tweetRefs[k] = g.tweetNode(tweetIds[k]);
            created[k] = g.created;
            if (g.created) {
                d.nodesCreated++;
            } else {
                existing[nExisting++] = tweetIds[k];
            }
        }
        // Fields are set where unset: no concurrent graphrec writer may check the same tweets meanwhile.
        g.lockKeys(KernelGraph.TWEET_FIELDS, Arrays.copyOf(existing, nExisting));
        boolean[] seen = new boolean[tweetIds.length];
        for (int i = 0; i < ids.length; i++) {
            int k = Arrays.binarySearch(tweetIds, ids[i]);
            long t = tweetRefs[k];
            boolean fresh = created[k] && !seen[k]; // a later row of the same tweet sees the first's writes
            seen[k] = true;
            int has = fresh ? 0 : g.nodeHas(t, g.createdAt, g.text);
            long setCreated = 0;
            long setAuthor = -1;
            String setText = null;
            if (createdAt[i] != 0 && (has & 1) == 0) {
                g.write.nodeSetProperty(t, g.createdAt, Values.longValue(createdAt[i]));
                setCreated = createdAt[i];
                g.createdAtSet.add(t);
            }
            String text = hasTexts ? texts.get(i) : null;
            if (text != null && !text.isEmpty() && (has & 2) == 0) {
                g.write.nodeSetProperty(t, g.text, Values.stringValue(text));
                setText = text;
                g.textSet.add(t);
            }
            if (authors[i] >= 0 && (fresh || !g.hasRelationship(t, g.posted, Direction.INCOMING))) {
                long a = authorRefs[Arrays.binarySearch(authorIds, authors[i])];
                g.createRelationship(a, g.posted, t);
                setAuthor = authors[i];
                d.relationshipsCreated++;
            }
            if (fresh || setCreated != 0 || setText != null || setAuthor >= 0) {
                d.tweet(ids[i], setAuthor, setCreated, setText);
            }
        }
    }

    /** The ids of {@code keys} whose node (at the same position in {@code all}) was not created now. */
    private static long[] existingOnly(long[] keys, long[] all, boolean[] fresh) {
        long[] out = new long[keys.length];
        int n = 0;
        for (long k : keys) {
            if (!fresh[Arrays.binarySearch(all, k)]) {
                out[n++] = k;
            }
        }
        return Arrays.copyOf(out, n);
    }

    static void checkFollows(long[] src, long[] dst, long[] ts) {
        Columns.sameLength("graphrec.writeFollows", src.length, dst.length, "dst");
        Columns.sameLength("graphrec.writeFollows", src.length, ts.length, "ts");
        for (int i = 0; i < src.length; i++) {
            Columns.checkId(i, "follower", src[i]);
            Columns.checkId(i, "followee", dst[i]);
        }
    }

    static void follows(KernelGraph g, long[] src, long[] dst, long[] ts, Delta d, Timer timer)
            throws KernelException {
        int n = src.length;
        long[] ids = Columns.sortedUnique(false, src, dst);
        long[] refs = new long[ids.length];
        boolean[] fresh = new boolean[ids.length];
        for (int k = 0; k < ids.length; k++) {
            refs[k] = g.userNode(ids[k]);
            fresh[k] = g.created;
            if (g.created) {
                d.users.add(ids[k]);
                d.nodesCreated++;
            }
        }
        int[] si = Columns.positions(ids, src);
        int[] di = Columns.positions(ids, dst);
        int[] order = Columns.rowsByGroup(si);
        g.lockKeys(KernelGraph.FOLLOWS_OF, existingOnly(Columns.sortedUnique(false, src), ids, fresh));
        timer.lap("nodes");
        RelationshipSelection out = RelationshipSelection.selection(g.follows, Direction.OUTGOING);
        LongHashSet targets = new LongHashSet();
        for (int i = 0; i < n; ) {
            int a = si[order[i]];
            int j = i;
            while (j < n && si[order[j]] == a) {
                j++;
            }
            long aRef = refs[a];
            targets.clear();
            if (!fresh[a]) {
                // Relationships the follower already has: scanned once per follower and call.
                g.read.singleNode(aRef, g.node);
                if (g.node.next()) {
                    g.node.relationships(g.rels, out);
                    while (g.rels.next()) {
                        targets.add(g.rels.otherNodeReference());
                    }
                }
            }
            for (int r = i; r < j; r++) {
                int row = order[r];
                long bRef = refs[di[row]];
                if (targets.add(bRef)) {
                    g.createRelationship(aRef, g.follows, bRef, ts[row]);
                    d.followSrc.add(src[row]);
                    d.followDst.add(dst[row]);
                    d.followTs.add(ts[row]);
                    d.relationshipsCreated++;
                }
            }
            i = j;
        }
        timer.lap("relationships");
    }

    static void checkEngagements(long[] users, long[] tweets, byte[] kinds, long[] ts, float[] weights) {
        String p = "graphrec.writeEngagements";
        Columns.sameLength(p, users.length, tweets.length, "tweets");
        Columns.sameLength(p, users.length, kinds.length, "kinds");
        Columns.sameLength(p, users.length, ts.length, "ts");
        Columns.sameLength(p, users.length, weights.length, "weights");
        for (int i = 0; i < users.length; i++) {
            Columns.checkId(i, "user", users[i]);
            Columns.checkId(i, "tweet", tweets[i]);
            if (kinds[i] < 0 || kinds[i] >= KernelGraph.KIND_TYPES.length) {
                throw new BadRowException(i, "unknown engagement kind " + kinds[i] + " (0.."
                        + (KernelGraph.KIND_TYPES.length - 1) + ", graph/schema.py KINDS)");
            }
            if (!(weights[i] >= 0) || Float.isInfinite(weights[i])) {
                throw new BadRowException(i, "weight " + weights[i] + " is not a finite non-negative number");
            }
        }
    }

    static void engagements(
            KernelGraph g, long[] users, long[] tweets, byte[] kinds, long[] ts, float[] weights, Delta d, Timer timer)
            throws KernelException {
        int n = users.length;
        long[] uids = Columns.sortedUnique(false, users);
        long[] urefs = new long[uids.length];
        boolean[] ufresh = new boolean[uids.length];
        for (int k = 0; k < uids.length; k++) {
            urefs[k] = g.userNode(uids[k]);
            ufresh[k] = g.created;
            if (g.created) {
                d.users.add(uids[k]);
                d.nodesCreated++;
            }
        }
        long[] tids = Columns.sortedUnique(false, tweets);
        long[] trefs = new long[tids.length];
        for (int k = 0; k < tids.length; k++) {
            trefs[k] = g.tweetNode(tids[k]);
            if (g.created) {
                d.tweet(tids[k], -1, 0, null);
                d.nodesCreated++;
            }
        }
        int[] ui = Columns.positions(uids, users);
        int[] ti = Columns.positions(tids, tweets);
        int[] order = Columns.rowsByGroup(ui);
        g.lockKeys(KernelGraph.ENGAGEMENTS_OF, existingOnly(uids, uids, ufresh));
        timer.lap("nodes");
        int[] types = g.engagements;
        RelationshipSelection out = RelationshipSelection.selection(types, Direction.OUTGOING);
        LongHashSet keys = new LongHashSet();
        for (int i = 0; i < n; ) {
            int u = ui[order[i]];
            int j = i;
            while (j < n && ui[order[j]] == u) {
                j++;
            }
            long uRef = urefs[u];
            keys.clear();
            if (!ufresh[u]) {
                g.read.singleNode(uRef, g.node);
                if (g.node.next()) {
                    g.node.relationships(g.rels, out);
                    while (g.rels.next()) {
                        int type = g.rels.type();
                        for (int k = 0; k < types.length; k++) {
                            if (types[k] == type) {
                                keys.add((g.rels.otherNodeReference() << 3) | k);
                            }
                        }
                    }
                }
            }
            for (int r = i; r < j; r++) {
                int row = order[r];
                long tRef = trefs[ti[row]];
                int kind = kinds[row];
                if (keys.add((tRef << 3) | kind)) {
                    g.createRelationship(uRef, types[kind], tRef, ts[row], weights[row]);
                    d.engUser.add(users[row]);
                    d.engTweet.add(tweets[row]);
                    d.engKind.add(kinds[row]);
                    d.engTs.add(ts[row]);
                    d.engWeight.add(weights[row]);
                    d.relationshipsCreated++;
                }
            }
            i = j;
        }
        timer.lap("relationships");
    }

    /**
     * Finish a write call: take the batch number from the graph's clock ({@link
     * KernelGraph#takeClock}, the lock the Cypher path takes too), stamp it on everything the call
     * created or set, and record what it changed as one change-log entry (a {@code :GraphrecDelta}
     * node with {@code seq} = the batch number and the packed columns of {@link Delta}). A call
     * that changed nothing takes no number and records nothing. Returns the number, or 0.
     */
    static long stampAndLog(KernelGraph g, Delta d) throws KernelException {
        if (!g.changedAnything()) {
            return 0;
        }
        KernelGraph.Clock clock = g.takeClock();
        g.stampAll(clock.seq());
        long node = g.write.nodeCreateWithLabels(new int[] {g.deltaLabel});
        g.write.nodeSetProperty(node, g.seq, Values.longValue(clock.seq()));
        for (Map.Entry<String, Object> e : d.columns().entrySet()) {
            int key = g.ktx.tokenWrite().propertyKeyGetOrCreateForName(e.getKey());
            Value value = e.getValue() instanceof byte[] b ? Values.byteArray(b) : Values.stringArray((String[]) e.getValue());
            g.write.nodeSetProperty(node, key, value);
        }
        return clock.seq();
    }
}
