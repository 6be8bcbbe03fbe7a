package io.graphrec.neo4j.plugin;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * Packed columns: the wire format of every procedure. A column is a byte array of
 * little-endian values (int64, float32 or int8), which is what numpy's {@code tobytes()} gives
 * for {@code <i8}, {@code <f4} and {@code i1} arrays and what {@code np.frombuffer} reads back.
 */
final class Columns {
    private Columns() {}

    /** Ids are non-negative int64 (graph/schema.py). */
    static final long MAX_ID = Long.MAX_VALUE;

    static long[] int64(String name, byte[] bytes) {
        if (bytes == null) {
            return new long[0];
        }
        if (bytes.length % Long.BYTES != 0) {
            throw new IllegalArgumentException(
                    name + ": " + bytes.length + " bytes is not a whole number of little-endian int64 values");
        }
        long[] out = new long[bytes.length / Long.BYTES];
        ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asLongBuffer().get(out);
        return out;
    }

    static float[] float32(String name, byte[] bytes) {
        if (bytes == null) {
            return new float[0];
        }
        if (bytes.length % Float.BYTES != 0) {
            throw new IllegalArgumentException(
                    name + ": " + bytes.length + " bytes is not a whole number of little-endian float32 values");
        }
        float[] out = new float[bytes.length / Float.BYTES];
        ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
        return out;
    }

    static byte[] int8(byte[] bytes) {
        return bytes == null ? new byte[0] : bytes;
    }

    static byte[] pack(long[] values, int n) {
        ByteBuffer buf = ByteBuffer.allocate(n * Long.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        buf.asLongBuffer().put(values, 0, n);
        return buf.array();
    }

    static byte[] pack(float[] values, int n) {
        ByteBuffer buf = ByteBuffer.allocate(n * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        buf.asFloatBuffer().put(values, 0, n);
        return buf.array();
    }

    static byte[] pack(byte[] values, int n) {
        return Arrays.copyOf(values, n);
    }

    static void sameLength(String proc, int n, int m, String name) {
        if (n != m) {
            throw new IllegalArgumentException(
                    proc + ": column " + name + " has " + m + " rows, the first column has " + n);
        }
    }

    static void checkId(int row, String what, long id) {
        if (id < 0) {
            throw new BadRowException(row, what + " id " + id + " is negative (ids are 0..2^63-1)");
        }
    }

    /** Sorted distinct values of the given columns (only values >= 0 when {@code skipNegative}). */
    static long[] sortedUnique(boolean skipNegative, long[]... columns) {
        int total = 0;
        for (long[] c : columns) {
            total += c.length;
        }
        long[] all = new long[total];
        int k = 0;
        for (long[] c : columns) {
            for (long v : c) {
                if (!skipNegative || v >= 0) {
                    all[k++] = v;
                }
            }
        }
        Arrays.sort(all, 0, k);
        int m = 0;
        for (int i = 0; i < k; i++) {
            if (m == 0 || all[m - 1] != all[i]) {
                all[m++] = all[i];
            }
        }
        return Arrays.copyOf(all, m);
    }

    /** Row numbers ordered by {@code group[row]}, rows of one group in input order. */
    static int[] rowsByGroup(int[] group) {
        long[] keys = new long[group.length];
        for (int i = 0; i < group.length; i++) {
            keys[i] = ((long) group[i] << 32) | i;
        }
        Arrays.sort(keys);
        int[] rows = new int[group.length];
        for (int i = 0; i < rows.length; i++) {
            rows[i] = (int) keys[i];
        }
        return rows;
    }

    /** For each value its position in {@code sorted} (which contains it). */
    static int[] positions(long[] sorted, long[] values) {
        int[] out = new int[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = Arrays.binarySearch(sorted, values[i]);
        }
        return out;
    }

    /** A growable int64 column. */
    static final class LongColumn {
        long[] values = new long[16];
        int size;

        void add(long v) {
            if (size == values.length) {
                values = Arrays.copyOf(values, size * 2);
            }
            values[size++] = v;
        }

        byte[] bytes() {
            return pack(values, size);
        }
    }

    /** A growable float32 column. */
    static final class FloatColumn {
        float[] values = new float[16];
        int size;

        void add(float v) {
            if (size == values.length) {
                values = Arrays.copyOf(values, size * 2);
            }
            values[size++] = v;
        }

        byte[] bytes() {
            return pack(values, size);
        }
    }

    /** A growable int8 column. */
    static final class ByteColumn {
        byte[] values = new byte[16];
        int size;

        void add(byte v) {
            if (size == values.length) {
                values = Arrays.copyOf(values, size * 2);
            }
            values[size++] = v;
        }

        byte[] bytes() {
            return pack(values, size);
        }
    }
}
