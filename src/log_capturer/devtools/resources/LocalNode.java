// What LocalOpenSearch.java and LocalElasticsearch.java share, compiled with each of them (it uses
// neither library): the arguments, the node's settings, the clean shutdown and the ready line.
//
// Usage of both: <main class> <base dir> <http port> <transport port> [name=value ...]
// (each name=value is one more node setting, e.g. thread_pool.write.queue_size=1).
final class LocalNode {
    private LocalNode() {}

    /** One setting put into the node's settings builder. */
    interface Put {
        void put(String name, String value);
    }

    /** A step that may throw (building the node, closing it). */
    interface Step {
        void run() throws Exception;
    }

    /** Exits 2 with the usage when the three arguments are missing; else the base dir. */
    static String baseDir(String main, String[] args) {
        if (args.length < 3) {
            System.err.println("usage: " + main + " <base dir> <http port> <transport port> [name=value ...]");
            System.exit(2);
        }
        return args[0];
    }

    /** The settings of a local node: 127.0.0.1 only, the two ports, single-node discovery, its
     *  roles (``roles`` puts them), the name=value arguments, and what no argument may change. */
    static void settings(String[] args, Put put, Runnable roles) {
        put.put("network.host", "127.0.0.1");
        put.put("http.port", args[1]);
        put.put("transport.port", args[2]);
        put.put("discovery.type", "single-node");
        roles.run();
        for (int i = 3; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            put.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        put.put("action.auto_create_index", "true");
        // A nearly full test disk must not turn indices read-only.
        put.put("cluster.routing.allocation.disk.threshold_enabled", "false");
    }

    /** Starts the node (``start``: build it, wait for yellow; a failure halts with 3), prints
     *  ``ready`` and runs until SIGTERM, which closes the node cleanly (``close``). */
    static void run(String ready, Step close, Step start) throws InterruptedException {
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                close.run();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }));
        try {
            start.run();
        } catch (Throwable t) {
            t.printStackTrace();
            System.out.flush();
            Runtime.getRuntime().halt(3);
        }
        System.out.println(ready);
        System.out.flush();
        Thread.currentThread().join();
    }
}
