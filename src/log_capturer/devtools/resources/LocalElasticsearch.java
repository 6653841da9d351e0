// A single Elasticsearch 7.10.2 node (the last Apache 2.0 release) for log-capturer's tests,
// compiled by log-capturer (javac) against codelibs' elasticsearch-cluster-runner jars it fetched
// from Maven Central. The same usage and behaviour as LocalOpenSearch.java:
//
// Usage: LocalElasticsearch <base dir> <http port> <transport port> [name=value ...]
// Binds 127.0.0.1 only, single-node discovery; prints LOCAL-ELASTICSEARCH-READY once the cluster
// is yellow. SIGTERM closes the node cleanly (its data stays in <base dir> for the next start).
import org.codelibs.elasticsearch.runner.ElasticsearchClusterRunner;

public final class LocalElasticsearch {
    private LocalElasticsearch() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: LocalElasticsearch <base dir> <http port> <transport port> [name=value ...]");
            System.exit(2);
        }
        final String base = args[0];
        final String httpPort = args[1];
        final String transportPort = args[2];
        final ElasticsearchClusterRunner runner = new ElasticsearchClusterRunner();
        runner.onBuild((index, settings) -> {
            settings.put("network.host", "127.0.0.1");
            settings.put("http.port", httpPort);
            settings.put("transport.port", transportPort);
            settings.put("discovery.type", "single-node");
            settings.putList("node.roles", "master", "data", "ingest");
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
            runner.build(ElasticsearchClusterRunner.newConfigs()
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
        System.out.println("LOCAL-ELASTICSEARCH-READY");
        System.out.flush();
        Thread.currentThread().join();
    }
}
