package io.graphrec.neo4j;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import org.neo4j.cli.AdminTool;
import org.neo4j.cli.ExecutionContext;
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
import org.neo4j.graphdb.GraphDatabaseService;
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
 *      (--password-file FILE [--reset-password] | --no-auth)
 * </pre>
 *
 * Prints exactly one line starting with {@code NEO4J_READY } (followed by the Bolt URI) once the
 * default database accepts queries. SIGTERM/SIGINT shut the DBMS down cleanly (shutdown hook).
 * With --port 0 (the default) the OS picks a free port, so there is no race between choosing a
 * port and binding it; the bound port is read back from Neo4j's ConnectorPortRegister.
 *
 * <p>Authentication is on unless --no-auth: user {@code neo4j}, password from --password-file.
 * A new store gets the password before its first start, as {@code neo4j-admin dbms
 * set-initial-password} does (run in-process, so the password is never on a command line). An
 * existing store this launcher never started with authentication (made with --no-auth, or by
 * an older version) whose {@code neo4j} user still has the default password gets the file's
 * password in a first pass with Bolt off, so no client can ever log in with the default; so
 * does any store with --reset-password. A marker file
 * ({@code data/dbms/graphrec-auth}) records that a store's password was set.
 */
public final class Launcher {
    private Launcher() {}

    public static void main(String[] args) throws Exception {
        Path home = null;
        int port = 0;
        String pagecache = "256m";
        Path configFile = null;
        Path passwordFile = null;
        boolean noAuth = false;
        boolean resetPassword = false;
        boolean exitOnStdinEof = false;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--home" -> home = Path.of(args[++i]).toAbsolutePath();
                case "--port" -> port = Integer.parseInt(args[++i]);
                case "--pagecache" -> pagecache = args[++i];
                case "--config" -> configFile = Path.of(args[++i]).toAbsolutePath();
                case "--password-file" -> passwordFile = Path.of(args[++i]).toAbsolutePath();
                case "--reset-password" -> resetPassword = true;
                case "--no-auth" -> noAuth = true;
                case "--exit-on-stdin-eof" -> exitOnStdinEof = true;
                default -> usage("unknown argument: " + args[i]);
            }
        }
        if (home == null) {
            usage("--home is required");
        }
        if (noAuth == (passwordFile != null)) {
            usage("give either --password-file FILE (authentication on) or --no-auth");
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
        Path marker = home.resolve("data").resolve("dbms").resolve("graphrec-auth");
        DatabaseManagementService dbms;
        try {
            if (!noAuth) {
                String password = readPassword(passwordFile);
                boolean newStore = !Files.exists(home.resolve("data").resolve("databases").resolve("system"));
                if (newStore) {
                    setInitialPassword(home, configFile, password);
                } else if (resetPassword || !Files.exists(marker)) {
                    setPasswordOffline(builder(home, configFile, port, pagecache, true, false), password, resetPassword);
                }
            } else {
                System.out.println("NEO4J_AUTH_DISABLED authentication is off: any local client can read and write");
            }
            dbms = builder(home, configFile, port, pagecache, !noAuth, true).build();
            if (!noAuth) {
                Files.createDirectories(marker.getParent());
                Files.writeString(marker, "the password of user neo4j was set by graphrec's launcher\n");
            }
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

    private static DatabaseManagementServiceBuilder builder(
            Path home, Path configFile, int port, String pagecache, boolean auth, boolean bolt) {
        DatabaseManagementServiceBuilder builder = new DatabaseManagementServiceBuilder(home);
        if (configFile != null) {
            builder.loadPropertiesFromFile(configFile); // explicit settings below still win
        }
        // The user log (what `neo4j console` prints) goes to stdout; debug.log stays under home/logs.
        builder.setUserLogProvider(new Log4jLogProvider(System.out, Level.INFO));
        builder.setConfig(BoltConnector.enabled, bolt)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                .setConfig(HttpConnector.enabled, false)
                .setConfig(HttpsConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, auth)
                .setConfig(GraphDatabaseSettings.pagecache_memory, SettingValueParsers.BYTES.parse(pagecache))
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                // Grow transaction logs on demand instead of writing 256 MB per database up front.
                .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                // Bolt's Netty event loops otherwise wait a 5 s quiet period each on shutdown (the
                // databases are already checkpointed and closed by then), which doubles stop time.
                .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
                .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_timeout, Duration.ofSeconds(5));
        return builder;
    }

    private static String readPassword(Path passwordFile) throws IOException {
        String password = Files.readString(passwordFile, StandardCharsets.UTF_8).strip();
        if (password.isEmpty()) {
            throw new IllegalArgumentException("the password file " + passwordFile + " is empty");
        }
        return password;
    }

    /** What `neo4j-admin dbms set-initial-password` does, in-process: the new store's system
     *  database creates user neo4j with this password when it is first initialised. */
    private static void setInitialPassword(Path home, Path configFile, String password) {
        Path confDir = configFile != null ? configFile.getParent() : home.resolve("conf");
        int rc = AdminTool.execute(new ExecutionContext(home, confDir), "dbms", "set-initial-password", password);
        if (rc != 0) {
            throw new IllegalStateException("neo4j-admin dbms set-initial-password failed with exit code " + rc);
        }
    }

    /** Sets user neo4j's password on an existing store, with Bolt off (nobody can connect meanwhile):
     *  only while it is still the default one (change required), unless {@code force}. */
    private static void setPasswordOffline(DatabaseManagementServiceBuilder builder, String password, boolean force) {
        DatabaseManagementService offline = builder.build();
        try {
            GraphDatabaseService system = offline.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
            Boolean changeRequired = system.executeTransactionally(
                    "SHOW USERS YIELD user, passwordChangeRequired WHERE user = 'neo4j' RETURN passwordChangeRequired",
                    Map.of(),
                    result -> result.hasNext() ? (Boolean) result.next().get("passwordChangeRequired") : null);
            if (changeRequired == null) {
                system.executeTransactionally(
                        "CREATE USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED", Map.of("password", password));
                System.out.println("NEO4J_AUTH created user neo4j with the password from the password file");
            } else if (force || changeRequired) {
                system.executeTransactionally(
                        "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED", Map.of("password", password));
                System.out.println("NEO4J_AUTH set the password of user neo4j from the password file");
            } else {
                System.out.println("NEO4J_AUTH_WARNING user neo4j of this store already has a password (not the "
                        + "default one); kept it. If it is not the one in the password file, clients cannot log in: "
                        + "start with --reset-password to set the file's");
            }
        } finally {
            offline.shutdown();
        }
    }

    private static void usage(String message) {
        System.err.println("NEO4J_FAILED " + message);
        System.err.println("usage: Launcher --home DIR [--port N] [--pagecache SIZE] [--config FILE] [--exit-on-stdin-eof]"
                + " (--password-file FILE [--reset-password] | --no-auth)");
        System.exit(2);
    }
}
