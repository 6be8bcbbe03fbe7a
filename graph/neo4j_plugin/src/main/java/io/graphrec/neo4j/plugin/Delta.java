package io.graphrec.neo4j.plugin;

import io.graphrec.neo4j.plugin.Columns.ByteColumn;
import io.graphrec.neo4j.plugin.Columns.FloatColumn;
import io.graphrec.neo4j.plugin.Columns.LongColumn;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What one write call actually changed, as packed columns (the change-log entry of the call and
 * the rows of an incremental export). Column names are those of graph.ingest.GraphColumns:
 *
 * <ul>
 *   <li>{@code users}: users created;
 *   <li>{@code tweet_ids, tweet_authors, tweet_created}: tweets created or completed, with the
 *       fields this call set (-1 / 0 where it set none); {@code tweet_text_index} (rows of those
 *       columns) and {@code tweet_texts}: the texts it set;
 *   <li>{@code follow_src, follow_dst, follow_ts}: follows created;
 *   <li>{@code eng_user, eng_tweet, eng_kind (int8), eng_ts, eng_weight (float32)}: engagements created.
 * </ul>
 */
final class Delta {
    final LongColumn users = new LongColumn();
    final LongColumn tweetIds = new LongColumn();
    final LongColumn tweetAuthors = new LongColumn();
    final LongColumn tweetCreated = new LongColumn();
    final LongColumn tweetTextIndex = new LongColumn();
    final List<String> tweetTexts = new ArrayList<>();
    final LongColumn followSrc = new LongColumn();
    final LongColumn followDst = new LongColumn();
    final LongColumn followTs = new LongColumn();
    final LongColumn engUser = new LongColumn();
    final LongColumn engTweet = new LongColumn();
    final ByteColumn engKind = new ByteColumn();
    final LongColumn engTs = new LongColumn();
    final FloatColumn engWeight = new FloatColumn();
    long nodesCreated;
    long relationshipsCreated;

    void tweet(long id, long author, long created, String text) {
        if (text != null) {
            tweetTextIndex.add(tweetIds.size);
            tweetTexts.add(text);
        }
        tweetIds.add(id);
        tweetAuthors.add(author);
        tweetCreated.add(created);
    }

    long rows() {
        return (long) users.size + tweetIds.size + followSrc.size + engUser.size;
    }

    boolean isEmpty() {
        return rows() == 0;
    }

    /** The non-empty columns: name -> byte[] (packed) or String[] (texts). */
    Map<String, Object> columns() {
        Map<String, Object> out = new LinkedHashMap<>();
        if (users.size > 0) {
            out.put("users", users.bytes());
        }
        if (tweetIds.size > 0) {
            out.put("tweet_ids", tweetIds.bytes());
            out.put("tweet_authors", tweetAuthors.bytes());
            out.put("tweet_created", tweetCreated.bytes());
            if (tweetTextIndex.size > 0) {
                out.put("tweet_text_index", tweetTextIndex.bytes());
                out.put("tweet_texts", tweetTexts.toArray(new String[0]));
            }
        }
        if (followSrc.size > 0) {
            out.put("follow_src", followSrc.bytes());
            out.put("follow_dst", followDst.bytes());
            out.put("follow_ts", followTs.bytes());
        }
        if (engUser.size > 0) {
            out.put("eng_user", engUser.bytes());
            out.put("eng_tweet", engTweet.bytes());
            out.put("eng_kind", engKind.bytes());
            out.put("eng_ts", engTs.bytes());
            out.put("eng_weight", engWeight.bytes());
        }
        return out;
    }
}
