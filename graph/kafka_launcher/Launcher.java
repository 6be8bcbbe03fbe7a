package io.graphrec.kafka;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.Collection;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.Node;

/**
 * Runs a Kafka broker (kafka.Kafka, KRaft combined mode) for graph/kafka_local.py.
 *
 * <pre>
 * java ... io.graphrec.kafka.Launcher --config server.properties --bootstrap 127.0.0.1:PORT [--exit-on-stdin-eof]
 * </pre>
 *
 * On top of kafka.Kafka it adds two things the Python side needs: a ready line
 * ({@code KAFKA_READY host:port}, printed once an admin client sees the broker in the cluster,
 * i.e. the broker answers metadata requests), and with {@code --exit-on-stdin-eof} an exit when
 * its parent dies (even by SIGKILL), so no orphan broker keeps its ports and data directory.
 * Either way the JVM's shutdown hooks run, so Kafka shuts down cleanly.
 */
public final class Launcher {
    static final String READY = "KAFKA_READY ";
    static final String FAILED = "KAFKA_FAILED ";

    private Launcher() {}

    public static void main(String[] args) throws Exception {
        String config = null;
        String bootstrap = null;
        boolean watchStdin = false;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--config" -> config = args[++i];
                case "--bootstrap" -> bootstrap = args[++i];
                case "--exit-on-stdin-eof" -> watchStdin = true;
                default -> {
                    System.out.println(FAILED + "unknown argument " + args[i]);
                    System.exit(2);
                }
            }
        }
        if (config == null || bootstrap == null) {
            System.out.println(FAILED + "usage: Launcher --config FILE --bootstrap HOST:PORT [--exit-on-stdin-eof]");
            System.exit(2);
        }
        if (watchStdin) {
            daemon("graphrec-stdin-watch", Launcher::exitOnStdinEof);
        }
        String target = bootstrap;
        daemon("graphrec-ready-probe", () -> probe(target));
        kafka.Kafka.main(new String[] {config}); // returns (or exits) when the broker stops
    }

    private static void daemon(String name, Runnable body) {
        Thread t = new Thread(body, name);
        t.setDaemon(true);
        t.start();
    }

    private static void exitOnStdinEof() {
        try {
            while (System.in.read() >= 0) {
                // the parent never writes; we only wait for end-of-file
            }
        } catch (IOException e) {
            // a broken pipe means the same: the parent is gone
        }
        System.out.println("stdin closed: the parent process is gone; shutting Kafka down");
        System.exit(0);
    }

    /** Waits for the broker's port, then for the broker in the cluster metadata; prints the ready line. */
    private static void probe(String bootstrap) {
        int colon = bootstrap.lastIndexOf(':');
        InetSocketAddress address =
                new InetSocketAddress(bootstrap.substring(0, colon), Integer.parseInt(bootstrap.substring(colon + 1)));
        while (!accepts(address)) {
            sleep(100);
        }
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "graphrec-ready-probe");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
        try (Admin admin = Admin.create(props)) {
            while (true) {
                try {
                    Collection<Node> nodes = admin.describeCluster().nodes().get(5, TimeUnit.SECONDS);
                    if (!nodes.isEmpty()) {
                        System.out.println(READY + bootstrap);
                        System.out.flush();
                        return;
                    }
                } catch (Exception e) {
                    // not yet
                }
                sleep(200);
            }
        }
    }

    private static boolean accepts(InetSocketAddress address) {
        try (Socket s = new Socket()) {
            s.connect(address, 1000);
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
