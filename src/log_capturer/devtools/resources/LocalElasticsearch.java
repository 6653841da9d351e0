// A single Elasticsearch 7.10.2 node (the last Apache 2.0 release) for log-capturer's tests,
// compiled by log-capturer (javac, with LocalNode.java) against codelibs'
// elasticsearch-cluster-runner jars it fetched from Maven Central. The same usage and behaviour
// as LocalOpenSearch.java:
//
// Usage: LocalElasticsearch <base dir> <http port> <transport port> [name=value ...]
// Binds 127.0.0.1 only, single-node discovery; prints LOCAL-ELASTICSEARCH-READY once the cluster
// is yellow. SIGTERM closes the node cleanly (its data stays in <base dir> for the next start).
import org.codelibs.elasticsearch.runner.ElasticsearchClusterRunner;

public final class LocalElasticsearch {
    private LocalElasticsearch() {}

    public static void main(String[] args) throws Exception {
        final String base = LocalNode.baseDir("LocalElasticsearch", args);
        final ElasticsearchClusterRunner runner = new ElasticsearchClusterRunner();
        runner.onBuild((index, settings) -> LocalNode.settings(args, settings::put,
            () -> settings.putList("node.roles", "master", "data", "ingest")));
        LocalNode.run("LOCAL-ELASTICSEARCH-READY", runner::close, () -> {
            runner.build(ElasticsearchClusterRunner.newConfigs()
                .basePath(base)
                .numOfNode(1)
                .clusterName("log-capturer-local")
                .printOnFailure());
            runner.ensureYellow();
        });
    }
}
