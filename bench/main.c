/*
 * mlops-bench: the benchmark harness. Subcommands are a table, each with its
 * own --help. The stage under test (mlops-bench-passthrough, later the
 * scorer) is a separate process that bench/run.sh starts.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "lifecycle.h"
#include "util.h"

typedef struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} command_t;

static const command_t commands[] = {
    {"run", "produce events, measure them on the output topic: events/s, latency", bench_cmd_run},
    {"create", "create topics (Admin API) and wait until they have leaders", bench_cmd_create},
    {"delete", "delete topics and consumer groups", bench_cmd_delete},
    {"report", "print a comparison table from result JSON lines", bench_cmd_report},
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: mlops-bench COMMAND [ARGS]   (mlops-bench COMMAND --help for more)\n\n"
                 "Commands:\n");
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(commands); i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\nbench/run.sh runs the whole comparison; bench/README.md explains the figures.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return MLOPS_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return MLOPS_EXIT_OK;
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        printf("mlops-bench %s\n", MLOPS_VERSION);
        return MLOPS_EXIT_OK;
    }
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(commands); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "mlops-bench: unknown command '%s' (run, create, delete, report)\n", argv[1]);
    return MLOPS_EXIT_USAGE;
}
