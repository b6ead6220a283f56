/*
 * mlopsctl: the one command-line tool. Subcommands are a table; each has
 * its own help. Exit codes: 0 ok, 1 failure, 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "lifecycle.h"
#include "util.h"

typedef struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} command_t;

/* Where the project's scripts are: $MLOPS_HOME, else the source tree. */
static const char *mlops_home(void)
{
    const char *home = getenv("MLOPS_HOME");
    return home && *home ? home : MLOPS_SOURCE_DIR;
}

static int cmd_stack(int argc, char **argv)
{
    static const char *actions[] = {"up", "down", "status", "logs", NULL};
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout,
                "Usage: mlopsctl stack up|down|status [--services] [kafka|postgres|redis]\n"
                "       mlopsctl stack logs [kafka|postgres|redis] [-f] [-n LINES]\n\n"
                "Start, stop or inspect the local stack: Apache Kafka (KRaft, 127.0.0.1:9092),\n"
                "PostgreSQL (127.0.0.1:5433) and Redis (127.0.0.1:6380), with their data under\n"
                "the state folder ($MLOPS_STATE_DIR, default <project>/.state).\n\n"
                "--services also starts (or shows) the suite's services as supervised local\n"
                "processes, restarted when they die: registry, ingest, trainer, scorer, monitor\n"
                "and the Slack notifier; configs, logs and pids under <state>/services\n"
                "(MLOPS_SERVICES_DIR). 'down' stops them first; 'down --services' only them.\n"
                "One service at a time: deploy/services.sh up|down|restart|status|logs NAME.\n");
        return argc < 2 ? MLOPS_EXIT_USAGE : MLOPS_EXIT_OK;
    }
    bool known = false;
    for (const char **a = actions; *a; a++)
        known |= !strcmp(argv[1], *a);
    if (!known) {
        fprintf(stderr, "mlopsctl stack: unknown action '%s' (up, down, status, logs)\n", argv[1]);
        return MLOPS_EXIT_USAGE;
    }
    char *script = xasprintf("%s/deploy/stack.sh", mlops_home());
    if (access(script, X_OK)) {
        fprintf(stderr, "mlopsctl stack: %s: %s (set MLOPS_HOME to the project folder)\n", script,
                strerror(errno));
        free(script);
        return MLOPS_EXIT_FAILURE;
    }
    char **args = xcalloc((size_t)argc + 2, sizeof(char *));
    args[0] = script;
    for (int i = 1; i < argc; i++)
        args[i] = argv[i];
    execv(script, args);
    fprintf(stderr, "mlopsctl stack: cannot run %s: %s\n", script, strerror(errno));
    free(args);
    free(script);
    return MLOPS_EXIT_FAILURE;
}

static int cmd_version(int argc, char **argv)
{
    printf("mlopsctl %s\n", MLOPS_VERSION);
    return MLOPS_EXIT_OK;
}

static int cmd_help(int argc, char **argv);

static const command_t commands[] = {
    {"stack", "start, stop and inspect the local Kafka, Postgres and Redis", cmd_stack},
    {"features", "clean and feature-engineer a CSV/JSONL file with a spec (offline ingest)",
     cmd_features},
    {"datagen", "generate synthetic data (attrition) as CSV or to Kafka, with drift and bad rows",
     cmd_datagen},
    {"produce", "produce a CSV/JSONL file to a topic as JSON events (labels split off)",
     cmd_produce},
    {"spec", "infer a feature spec from a CSV, check one, or diff two versions", cmd_spec},
    {"dlq", "list, show and redrive the events ingest refused (events.dlq)", cmd_dlq},
    {"replay", "copy a topic's offset or time range into another topic (backfills)", cmd_replay},
    {"alerts", "silence alerts, list silences, end one (the monitor's API)", cmd_alerts},
    {"predict", "score a CSV with a model/1 artifact (the scorer's code)", cmd_predict},
    {"token", "create, list and revoke mlops-registry API tokens", cmd_token},
    {"drift-stat", "drift statistics (KS, chi-square, PSI, JS, ...) for JSON requests on stdin",
     cmd_drift_stat},
    {"models",
     "the model registry: list, versions, register, promote, rollback, history, audit, card",
     cmd_models},
    {"registry", "back up or restore the registry's database (pg_dump/pg_restore)", cmd_registry},
    {"train", "file a training request (train.requests) and --wait for the registered version",
     cmd_train},
    {"offsets", "a topic's offset range now, as TOPIC:PARTITION:FROM-TO for train --range",
     cmd_offsets},
    {"drift", "the monitor's drift table: drift status [--model M] [--json]", cmd_drift},
    {"version", "print the version", cmd_version},
    {"help", "this help", cmd_help},
};

static int cmd_help(int argc, char **argv)
{
    printf("Usage: mlopsctl COMMAND [ARGS]\n\nCommands:\n");
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(commands); i++)
        printf("  %-10s %s\n", commands[i].name, commands[i].summary);
    printf("\nRun 'mlopsctl COMMAND --help' for a command's options.\n");
    return MLOPS_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        cmd_help(0, NULL);
        return MLOPS_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "-h") || !strcmp(name, "--help"))
        return cmd_help(0, NULL);
    if (!strcmp(name, "-V") || !strcmp(name, "--version"))
        return cmd_version(0, NULL);
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(commands); i++)
        if (!strcmp(commands[i].name, name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "mlopsctl: unknown command '%s' (see mlopsctl help)\n", name);
    return MLOPS_EXIT_USAGE;
}
