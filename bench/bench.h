/**
 * @file bench.h
 * @brief Subcommands of mlops-bench (one file each); see bench/README.md.
 *
 * Each takes the arguments after the subcommand name (argv[0] is the
 * subcommand) and returns an exit code from lifecycle.h: 0 ok, 1 failure,
 * 2 usage.
 */
#ifndef MLOPS_BENCH_H
#define MLOPS_BENCH_H

/** Load generator + measuring consumer (loadgen.c). */
int bench_cmd_run(int argc, char **argv);
/** Create uniquely named topics and wait for their leaders (admin.c). */
int bench_cmd_create(int argc, char **argv);
/** Delete topics and consumer groups (admin.c). */
int bench_cmd_delete(int argc, char **argv);
/** Print a comparison table from result JSON lines (report.c). */
int bench_cmd_report(int argc, char **argv);

#endif
