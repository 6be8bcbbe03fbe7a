package io.graphrec.neo4j.plugin;

/**
 * A row of a write batch that cannot be written. The whole call fails (its transaction rolls
 * back, nothing of the batch is written); the message starts with {@code row N:} where N is the
 * 0-based row of the batch's columns, which the Python side turns into an InputError.
 */
final class BadRowException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    BadRowException(int row, String message) {
        super("row " + row + ": " + message);
    }
}
