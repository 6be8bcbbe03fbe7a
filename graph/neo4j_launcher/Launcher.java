package io.graphrec.neo4j;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.SettingValueParsers;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.ConnectorPortRegister;
import org.neo4j.configuration.connectors.ConnectorType;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.connectors.HttpsConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.internal.helpers.HostnamePort;
import org.neo4j.kernel.internal.GraphDatabaseAPI;
import org.neo4j.kernel.internal.Version;
import org.neo4j.logging.Level;
import org.neo4j.logging.log4j.Log4jLogProvider;

/**
 * A Neo4j Community DBMS (embedded API, Bolt connector on the loopback interface) for local
 * development and tests on machines without Docker. Started by graph/neo4j_local.py.
 *
 * <pre>
 * java [JVM flags] -cp classes:lib/* io.graphrec.neo4j.Launcher --home DIR [--port N]
 *      [--pagecache 256m] [--config neo4j.conf] [--exit-on-stdin-eof]
 * </pre>
 *
 * Prints exactly one line starting with {@code NEO4J_READY } (followed by the Bolt URI) once the
 * default database accepts queries. SIGTERM/SIGINT shut the DBMS down cleanly (shutdown hook).
 * With --port 0 (the default) the OS picks a free port, so there is no race between choosing a
 * port and binding it; the bound port is read back from Neo4j's ConnectorPortRegister.
 * Authentication is disabled: the connector only listens on 127.0.0.1.
 */
public final class Launcher {
    private Launcher() {}

    public static void main(String[] args) throws Exception {
        Path home = null;
        int port = 0;
        String pagecache = "256m";
        Path configFile = null;
        boolean exitOnStdinEof = false;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--home" -> home = Path.of(args[++i]).toAbsolutePath();
                case "--port" -> port = Integer.parseInt(args[++i]);
                case "--pagecache" -> pagecache = args[++i];
                case "--config" -> configFile = Path.of(args[++i]).toAbsolutePath();
                case "--exit-on-stdin-eof" -> exitOnStdinEof = true;
                default -> usage("unknown argument: " + args[i]);
            }
        }
        if (home == null) {
            usage("--home is required");
        }
        Files.createDirectories(home);
        if (exitOnStdinEof) {
            // The parent keeps our stdin open; if it dies (even by SIGKILL, even while we are still
            // starting) the pipe closes and we shut down instead of lingering as an orphan holding
            // the store lock.
            Thread watcher = new Thread(() -> {
                try (InputStream in = System.in) {
                    byte[] buf = new byte[256];
                    while (in.read(buf) >= 0) {
                        // discard
                    }
                } catch (IOException ignored) {
                    // treat as EOF
                }
                System.out.println("NEO4J_STDIN_CLOSED");
                System.exit(0);
            }, "stdin-watcher");
            watcher.setDaemon(true);
            watcher.start();
        }

        long t0 = System.nanoTime();
        DatabaseManagementServiceBuilder builder = new DatabaseManagementServiceBuilder(home);
        if (configFile != null) {
            builder.loadPropertiesFromFile(configFile); // explicit settings below still win
        }
        // The user log (what `neo4j console` prints) goes to stdout; debug.log stays under home/logs.
        builder.setUserLogProvider(new Log4jLogProvider(System.out, Level.INFO));
        builder.setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                .setConfig(HttpConnector.enabled, false)
                .setConfig(HttpsConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, false)
                .setConfig(GraphDatabaseSettings.pagecache_memory, SettingValueParsers.BYTES.parse(pagecache))
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                // Grow transaction logs on demand instead of writing 256 MB per database up front.
                .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                // Bolt's Netty event loops otherwise wait a 5 s quiet period each on shutdown (the
                // databases are already checkpointed and closed by then), which doubles stop time.
                .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
                .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_timeout, Duration.ofSeconds(5));

        DatabaseManagementService dbms;
        try {
            dbms = builder.build();
        } catch (Throwable e) {
            System.out.println("NEO4J_FAILED " + e);
            e.printStackTrace(System.out);
            System.exit(1);
            return;
        }
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("NEO4J_STOPPING");
            System.out.flush();
            try {
                dbms.shutdown();
            } finally {
                System.out.println("NEO4J_STOPPED");
                System.out.flush();
                stopped.countDown();
            }
        }, "neo4j-shutdown"));

        try {
            GraphDatabaseAPI db = (GraphDatabaseAPI) dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME);
            // The Bolt connector is up once build() returns; make sure the default database answers too.
            try (var tx = db.beginTx()) {
                tx.execute("RETURN 1").close();
                tx.commit();
            }
            HostnamePort bound = db.getDependencyResolver()
                    .resolveDependency(ConnectorPortRegister.class)
                    .getLocalAddress(ConnectorType.BOLT);
            System.out.printf(
                    "NEO4J_VERSION %s home=%s pagecache=%s started_in_ms=%d%n",
                    Version.getNeo4jVersion(), home, pagecache, (System.nanoTime() - t0) / 1_000_000);
            System.out.println("NEO4J_READY bolt://127.0.0.1:" + bound.getPort());
            System.out.flush();
        } catch (Throwable e) {
            // Neo4j's non-daemon threads would keep the JVM alive after main() throws; exit instead
            // (the shutdown hook closes the DBMS).
            System.out.println("NEO4J_FAILED " + e);
            e.printStackTrace(System.out);
            System.exit(1);
        }
        stopped.await(); // the shutdown hook releases us; the JVM then exits
    }

    private static void usage(String message) {
        System.err.println("NEO4J_FAILED " + message);
        System.err.println(
                "usage: Launcher --home DIR [--port N] [--pagecache SIZE] [--config FILE] [--exit-on-stdin-eof]");
        System.exit(2);
    }
}
