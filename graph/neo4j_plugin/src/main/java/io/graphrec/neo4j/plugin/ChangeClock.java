package io.graphrec.neo4j.plugin;

import java.util.Iterator;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import org.neo4j.exceptions.KernelException;
import org.neo4j.kernel.api.KernelTransaction;

/**
 * Hands out change-log sequence numbers and says up to which one the log is complete.
 *
 * <p>Writers run concurrently, so a call that took seq 7 may commit after the one that took 8. A
 * reader must therefore not pass 7 while it is still open: the <em>watermark</em> is one below the
 * lowest seq whose transaction is still open (every seq up to it is committed and applied, or
 * rolled back and absent for good), and the highest seq handed out when none is open. A
 * transaction counts as open until Neo4j has closed it after applying its commit (its
 * {@code closed} flag is set after the apply; a pooled transaction object that was reused for a
 * later transaction has another sequence number).
 *
 * <p>The state is in memory, per database. After a restart the next seq continues after the
 * highest one in the log, and a marker is never above the highest seq committed (see
 * {@link KernelGraph#lastCommittedSeq}), so a seq that was handed out, rolled back and handed out
 * again after a restart is never behind a marker.
 */
final class ChangeClock {
    private static final Map<UUID, ChangeClock> CLOCKS = new ConcurrentHashMap<>();

    static ChangeClock of(KernelTransaction ktx) {
        return CLOCKS.computeIfAbsent(ktx.getDatabaseId(), id -> new ChangeClock());
    }

    private record Open(KernelTransaction ktx, long txSequence) {
        boolean closed() {
            return ktx.getTransactionSequenceNumber() != txSequence || (!ktx.isOpen() && !ktx.isClosing());
        }
    }

    private long next = -1;
    private final TreeMap<Long, Open> open = new TreeMap<>();

    private void init(KernelGraph g) throws KernelException {
        if (next < 0) {
            next = g.lastSeqInLog() + 1;
        }
    }

    /** The next seq, for a call about to write its change-log entry in the transaction {@code g}. */
    synchronized long take(KernelGraph g) throws KernelException {
        init(g);
        long seq = next++;
        open.put(seq, new Open(g.ktx, g.ktx.getTransactionSequenceNumber()));
        return seq;
    }

    /** Every seq up to the returned one is closed. */
    synchronized long watermark(KernelGraph g) throws KernelException {
        init(g);
        for (Iterator<Open> it = open.values().iterator(); it.hasNext(); ) {
            if (it.next().closed()) {
                it.remove();
            }
        }
        return open.isEmpty() ? next - 1 : open.firstKey() - 1;
    }
}
