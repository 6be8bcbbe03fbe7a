package io.graphrec.neo4j.plugin;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;
import org.neo4j.exceptions.KernelException;
import org.neo4j.internal.kernel.api.IndexQueryConstraints;
import org.neo4j.internal.kernel.api.NodeValueIndexCursor;
import org.neo4j.internal.kernel.api.PropertyIndexQuery;
import org.neo4j.internal.schema.IndexOrder;
import org.neo4j.kernel.api.KernelTransaction;
import org.neo4j.kernel.internal.Version;
import org.neo4j.procedure.Context;
import org.neo4j.procedure.Description;
import org.neo4j.procedure.Mode;
import org.neo4j.procedure.Name;
import org.neo4j.procedure.Procedure;
import org.neo4j.values.storable.Values;

/**
 * graphrec's server-side procedures: columnar batch writes with first-write-wins semantics, a
 * packed full export, and a change log for incremental exports. Python side:
 * graph/neo4j_procedures.py. Each write call runs in the caller's transaction (the Python side
 * makes it one transaction per batch): a bad row fails the call, and the transaction, whole.
 * Write calls may run concurrently (they lock the keys they check, see
 * {@link KernelGraph#lockKeys}) up to their end, where each takes the next batch number from the
 * graph's one clock, as the Cypher path does, stamps what it created and logs it
 * ({@link Writes#stampAndLog}); so both paths' batches interleave in one order, which exports read.
 *
 * <p>The procedures use the kernel API ({@link KernelTransaction}), so the server must list them
 * as unrestricted: {@code dbms.security.procedures.unrestricted=graphrec.*}.
 */
public class GraphrecProcedures {
    /** Bumped when a procedure's signature or a column's meaning changes (checked by the client). */
    public static final long PROTOCOL = 2;

    public static final String VERSION = "1.0";

    @Context
    public KernelTransaction ktx;

    public static final class VersionRow {
        public String version;
        public long protocol;
        public String neo4j;
        public List<String> kinds;
    }

    public static final class WriteRow {
        /** The call's change-log entry (0: it changed nothing). */
        public long seq;
        public long rows;
        public long nodes;
        public long relationships;
        public Map<String, Object> timings;
    }

    public static final class PruneRow {
        public long deleted;
        public long pruned;
    }

    @Procedure(name = "graphrec.version", mode = Mode.READ)
    @Description("graphrec plugin version, protocol, Neo4j version and the engagement relationship types by kind code.")
    public Stream<VersionRow> version() {
        VersionRow row = new VersionRow();
        row.version = VERSION;
        row.protocol = PROTOCOL;
        // Touches the kernel transaction: fails here, not at the first write, when the server
        // sandboxes the plugin (dbms.security.procedures.unrestricted lacks graphrec.*).
        row.neo4j = Version.getNeo4jVersion() + (ktx.isTerminated() ? " (terminated)" : "");
        row.kinds = Arrays.asList(KernelGraph.KIND_TYPES);
        return Stream.of(row);
    }

    @Procedure(name = "graphrec.writeUsers", mode = Mode.WRITE)
    @Description("MERGE (:User {id}) for each id (packed little-endian int64).")
    public Stream<WriteRow> writeUsers(@Name("ids") byte[] ids) throws KernelException {
        Writes.Timer timer = new Writes.Timer();
        long[] id = Columns.int64("ids", ids);
        return write(timer, id.length, (g, d) -> Writes.users(g, id, d));
    }

    @Procedure(name = "graphrec.writeTweets", mode = Mode.WRITE)
    @Description("Tweets with authors (-1 = unknown), creation times (0 = unknown) and texts (null or '' = none), "
            + "first write wins per field; authors are merged as users.")
    public Stream<WriteRow> writeTweets(
            @Name("ids") byte[] ids,
            @Name("authors") byte[] authors,
            @Name("created") byte[] created,
            @Name("texts") List<String> texts)
            throws KernelException {
        Writes.Timer timer = new Writes.Timer();
        long[] id = Columns.int64("ids", ids);
        long[] author = Columns.int64("authors", authors);
        long[] when = Columns.int64("created", created);
        Writes.checkTweets(id, author, when, texts);
        return write(timer, id.length, (g, d) -> Writes.tweets(g, id, author, when, texts, d));
    }

    @Procedure(name = "graphrec.writeFollows", mode = Mode.WRITE)
    @Description("FOLLOWS from src to dst with ts (packed int64 columns); an existing follow is kept as it is.")
    public Stream<WriteRow> writeFollows(@Name("src") byte[] src, @Name("dst") byte[] dst, @Name("ts") byte[] ts)
            throws KernelException {
        Writes.Timer timer = new Writes.Timer();
        long[] s = Columns.int64("src", src);
        long[] t = Columns.int64("dst", dst);
        long[] when = Columns.int64("ts", ts);
        Writes.checkFollows(s, t, when);
        return write(timer, s.length, (g, d) -> Writes.follows(g, s, t, when, d, timer));
    }

    @Procedure(name = "graphrec.writeEngagements", mode = Mode.WRITE)
    @Description("Engagements (users, tweets int64; kinds int8 codes; ts int64; weights float32), one per "
            + "(user, tweet, kind); an existing one is kept as it is.")
    public Stream<WriteRow> writeEngagements(
            @Name("users") byte[] users,
            @Name("tweets") byte[] tweets,
            @Name("kinds") byte[] kinds,
            @Name("ts") byte[] ts,
            @Name("weights") byte[] weights)
            throws KernelException {
        Writes.Timer timer = new Writes.Timer();
        long[] u = Columns.int64("users", users);
        long[] t = Columns.int64("tweets", tweets);
        byte[] k = Columns.int8(kinds);
        long[] when = Columns.int64("ts", ts);
        float[] w = Columns.float32("weights", weights);
        Writes.checkEngagements(u, t, k, when, w);
        return write(timer, u.length, (g, d) -> Writes.engagements(g, u, t, k, when, w, d, timer));
    }

    @FunctionalInterface
    private interface Work {
        void run(KernelGraph g, Delta d) throws KernelException;
    }

    private Stream<WriteRow> write(Writes.Timer timer, int rows, Work work) throws KernelException {
        timer.lap("decode");
        try (KernelGraph g = KernelGraph.forWrite(ktx)) {
            Delta d = new Delta();
            work.run(g, d);
            timer.lap("write");
            WriteRow row = new WriteRow();
            row.seq = Writes.stampAndLog(g, d);
            timer.lap("stamp");
            row.rows = rows;
            row.nodes = d.nodesCreated;
            row.relationships = d.relationshipsCreated;
            row.timings = timer.ms;
            return Stream.of(row);
        }
    }

    @Procedure(name = "graphrec.export", mode = Mode.READ)
    @Description("The graph up to batch number hw (graph/cypher.py LAST_BATCH_SEQ, read by the client under the "
            + "clock's lock) as packed column chunks of up to chunkRows rows: a marker record first (epoch, seq = hw), "
            + "then users, follows, engagements, tweets, timings. With after >= 0, only what batches after it created "
            + "or set (a scan: what graphrec.changes falls back to).")
    public Stream<Export.Chunk> export(
            @Name("hw") long hw,
            @Name(value = "after", defaultValue = "-1") long after,
            @Name(value = "chunkRows", defaultValue = "1048576") long chunkRows)
            throws KernelException {
        Export.Full full = new Export.Full(KernelGraph.forRead(ktx), after, hw, (int) Math.min(chunkRows, 1 << 26));
        return StreamSupport.stream(Spliterators.spliteratorUnknownSize(full, Spliterator.ORDERED), false)
                .onClose(full::close);
    }

    @Procedure(name = "graphrec.changes", mode = Mode.READ)
    @Description("What the batches numbered after seq, up to hw, created or set: a marker record (epoch, hw), then "
            + "packed columns: the change-log entries of the graphrec write calls when every batch in the range has "
            + "one, else (a Cypher-path batch among them, or a pruned log) one scan of the stamps.")
    public Stream<Export.Chunk> changes(
            @Name("epoch") long epoch,
            @Name("seq") long seq,
            @Name("hw") long hw,
            @Name(value = "chunkRows", defaultValue = "1048576") long chunkRows)
            throws KernelException {
        KernelGraph g = KernelGraph.forRead(ktx);
        try {
            Export.Chunk marker = Export.checkMarker(g, epoch, seq, hw);
            KernelGraph.Clock clock = g.clockIfExists();
            long pruned = clock == null ? 0 : clock.pruned();
            if (seq >= pruned && g.deltaCount(seq, hw) == hw - seq) {
                List<Export.Chunk> out = Export.changes(g, seq, hw);
                out.add(0, marker);
                g.close();
                return out.stream();
            }
        } catch (RuntimeException | KernelException e) {
            g.close();
            throw e;
        }
        Export.Full full = new Export.Full(g, seq, hw, (int) Math.min(chunkRows, 1 << 26));
        return StreamSupport.stream(Spliterators.spliteratorUnknownSize(full, Spliterator.ORDERED), false)
                .onClose(full::close);
    }

    @Procedure(name = "graphrec.pruneChanges", mode = Mode.WRITE)
    @Description("Delete change-log entries up to batch `through` (of this epoch). graphrec.changes from an older "
            + "marker then scans the stamps instead.")
    public Stream<PruneRow> pruneChanges(@Name("epoch") long epoch, @Name("through") long through)
            throws KernelException {
        try (KernelGraph g = KernelGraph.forWrite(ktx);
                NodeValueIndexCursor cursor = ktx.cursors().allocateNodeValueIndexCursor(g.cc, g.mt)) {
            KernelGraph.Clock clock = g.clockIfExists();
            if (clock == null) {
                return Stream.of(new PruneRow());
            }
            ktx.locks().acquireExclusiveNodeLock(clock.ref()); // one pruner at a time; waits for a batch in flight
            clock = g.clockIfExists();
            if (epoch != clock.epoch()) {
                throw new IllegalArgumentException(
                        "graphrec.pruneChanges: the marker is from another graph (epoch " + epoch + ", this "
                                + "database's is " + clock.epoch() + ")");
            }
            long upTo = Math.min(through, clock.seq());
            PruneRow row = new PruneRow();
            row.pruned = Math.max(clock.pruned(), upTo);
            if (upTo > clock.pruned()) {
                g.read.nodeIndexSeek(
                        ktx.queryContext(),
                        g.read.indexReadSession(g.deltaIndex),
                        cursor,
                        IndexQueryConstraints.ordered(IndexOrder.ASCENDING),
                        PropertyIndexQuery.range(g.seq, Values.longValue(clock.pruned()), false, Values.longValue(upTo), true));
                while (cursor.next()) {
                    if (g.write.nodeDelete(cursor.nodeReference())) {
                        row.deleted++;
                    }
                }
                g.write.nodeSetProperty(clock.ref(), g.pruned, Values.longValue(upTo));
            }
            return Stream.of(row);
        }
    }
}
